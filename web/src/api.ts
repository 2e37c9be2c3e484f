// The one place the app talks to the API: the key (sessionStorage, sent as a Bearer
// header, never in a URL), error bodies turned into messages, and the auth state the
// key prompt listens to.

const KEY_STORAGE = "chroma.apiKey";

export type AuthState = "ok" | "needed" | "rejected";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly scope?: string,
  ) {
    super(message);
  }
}

type Listener = (state: AuthState) => void;
const listeners = new Set<Listener>();
let authState: AuthState = "ok";

export function onAuth(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setAuthState(state: AuthState): void {
  authState = state;
  listeners.forEach((listener) => listener(state));
}

export function getAuthState(): AuthState {
  return authState;
}

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function saveKey(key: string): void {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** Checks a key against a read route; answers whether the server knows it. */
export async function tryKey(key: string): Promise<boolean> {
  const response = await fetch("/api/v1/status", { headers: { Authorization: `Bearer ${key}` } });
  if (response.status === 401) return false;
  saveKey(key);
  setAuthState("ok");
  return true;
}

function scopeFrom(method: string, path: string, message: string): string {
  // The server says "... needs <scope>"; fall back on what the route family needs.
  const named = /needs (\w+)\s*$/.exec(message);
  if (named) return named[1];
  if (path.startsWith("/api/v1/operations") && method !== "GET") return "admin";
  return method === "GET" || path === "/api/v1/query" ? "read" : "write";
}

export type Query = Record<string, string | number | boolean | string[] | null | undefined>;

export function queryString(params: Query): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((item) => search.append(name, item));
    else search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export interface Answer<T> {
  status: number;
  body: T;
}

/** One API call; throws ApiError with the server's message on any non-2xx. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = await response.json().catch(() => null);
  if (response.ok) return { status: response.status, body: parsed as T };
  const message: string = parsed?.message ?? `${response.status} ${response.statusText}`;
  if (response.status === 401) {
    if (key) forgetKey();
    setAuthState(key ? "rejected" : "needed");
    throw new ApiError(401, "An API key is needed.");
  }
  if (response.status === 403) {
    const scope = scopeFrom(method, path.split("?")[0], message);
    throw new ApiError(403, `This key lacks the ${scope} scope.`, scope);
  }
  throw new ApiError(response.status, message);
}

export async function get<T>(path: string, params: Query = {}): Promise<T> {
  return (await call<T>("GET", path + queryString(params))).body;
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  return (await call<T>("POST", path, body)).body;
}

// ---- Shapes of the answers the app reads (see chroma-api.yaml) ----

export interface EmbeddingSet {
  key: string;
  fields: Record<string, unknown>;
  dimension: number | null;
  counts: Record<string, number>;
  last_log: string | null;
}

export interface Dataset {
  name: string;
  embedding_set_key: string | null;
  split: string;
  record_count: number;
}

export interface QueueItem {
  id: string;
  dataset: string;
  input_uri: string | null;
  score: number;
  percentile: number;
  verdict: string;
  signals: Record<string, number>;
  raw_signals: Record<string, number>;
  inference_class: string | null;
  tags: string[];
  logged_at: string;
}

export interface QueuePage {
  items: QueueItem[];
  next_cursor: string | null;
  total: number;
  mhb_version: number | null;
  updated_at: string | null;
}

export interface Assessment {
  score: number;
  percentile: number;
  verdict: string;
  signals: Record<string, number>;
  raw_signals?: Record<string, number>;
}

export interface RecordDetail {
  id: string;
  dataset: string;
  split: string;
  embedding_set_key: string;
  input_uri: string | null;
  inference_class: string | null;
  label_class: string | null;
  scores: Record<string, number> | null;
  tags: string[];
  metadata: Record<string, unknown> | null;
  logged_at: string;
  assessment: Assessment | null;
}

export interface Neighbour {
  id: string;
  dataset: string;
  split: string;
  distance: number;
  input_uri: string | null;
  payload: { label_class?: string | null; inference_class?: string | null; tags?: string[] };
}

export interface MapPoints {
  id: string[];
  dataset: string[];
  split: string[];
  x: number[];
  y: number[];
  label_class: (string | null)[];
  inference_class: (string | null)[];
  priority: (number | null)[];
}

export interface MapReady {
  embedding_set_key: string;
  status: "ready";
  method: string;
  version: string | number;
  computed_at: string;
  count: number;
  total?: number; // points in the map before the server subsampled it to `limit`
  points: MapPoints;
}

export interface MapPending {
  embedding_set_key: string;
  status: "pending";
  operation_id: number;
}

export interface Operation {
  id: number;
  kind: string;
  embedding_set_key: string | null;
  state: string;
  progress: number;
  message: string | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_s: number | null;
  error: string | null;
}

export interface Component {
  name: string;
  kind: string;
  state: string;
  pid: number | null;
  host: string | null;
  uptime_s: number | null;
  heartbeat_age_s: number | null;
  restarts: number;
  operation_kinds: string[];
  last_error: string | null;
}

export interface IndexStatus {
  embedding_set_key: string;
  index_version: number | null;
  indexed_count: number;
  indexed_seq: number;
  latest_seq: number;
  stale: boolean;
  index_updated_at: string | null;
  mhb_version: number | null;
  scored_seq: number;
  index_lag: number;
  queue_lag: number;
}

export interface Status {
  mode: string;
  version: string;
  components: Component[];
  queue_depth: Record<string, number>;
  embedding_sets: IndexStatus[];
  recent_operations: Operation[];
}

export async function embeddingSets(): Promise<EmbeddingSet[]> {
  return (await get<{ data: EmbeddingSet[] }>("/api/v1/embeddingsets")).data;
}

export async function fetchRecord(dataset: string, id: string): Promise<RecordDetail> {
  return get<RecordDetail>(
    `/api/v1/datasets/${encodeURIComponent(dataset)}/records/${encodeURIComponent(id)}`,
  );
}

export async function fetchMap(key: string, limit?: number): Promise<Answer<MapReady | MapPending>> {
  return call<MapReady | MapPending>("GET", `/api/v1/map${queryString({ embedding_set_key: key, limit })}`);
}

/** Marks records labelled, one request per dataset; answers how many left the queue. */
export async function markLabelled(records: { dataset: string; id: string }[]): Promise<number> {
  const byDataset = new Map<string, string[]>();
  for (const record of records) {
    byDataset.set(record.dataset, [...(byDataset.get(record.dataset) ?? []), record.id]);
  }
  let count = 0;
  for (const [dataset, ids] of byDataset) {
    count += (await post<{ count: number }>("/api/v1/recommendations/labelled", { dataset, ids })).count;
  }
  return count;
}
