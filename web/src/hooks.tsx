// Small shared hooks: async loading with errors, and the chosen embedding set.
import { useEffect, useState } from "preact/hooks";
import { ApiError, EmbeddingSet, embeddingSets } from "./api";
import { navigate, useLocation } from "./router";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
}

/** Runs `load` whenever `deps` change; a 401 leaves the error to the key prompt. */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> & { reload: () => void } {
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: unknown) =>
        live && setState({ data: null, error: errorText(error), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) return error.status === 401 ? "" : error.message;
  return error instanceof Error ? error.message : String(error);
}

/** The embedding set in the URL (?set=), else the first with production records. */
export function useEmbeddingSet(): {
  sets: EmbeddingSet[];
  key: string | null;
  choose: (key: string) => void;
  error: string | null;
} {
  const location = useLocation();
  const loaded = useAsync(embeddingSets, []);
  const sets = loaded.data ?? [];
  const wanted = location.query.get("set");
  const fallback = sets.find((s) => (s.counts.production ?? 0) > 0) ?? sets[0];
  const key = wanted ?? fallback?.key ?? null;
  const choose = (next: string) => {
    const query = new URLSearchParams(location.query);
    query.set("set", next);
    navigate(`${location.path}?${query}`);
  };
  return { sets, key, choose, error: loaded.error };
}

export function SetPicker({ sets, value, onChange }: { sets: EmbeddingSet[]; value: string | null; onChange: (key: string) => void }) {
  return (
    <label>
      Embedding set{" "}
      <select data-testid="set-picker" value={value ?? ""} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
        {sets.map((s) => (
          <option value={s.key} key={s.key}>
            {describeSet(s)}
          </option>
        ))}
      </select>
    </label>
  );
}

export function describeSet(set: EmbeddingSet): string {
  const fields = Object.entries(set.fields).map(([k, v]) => `${k}=${v}`).join(" ");
  const counts = Object.entries(set.counts).map(([k, v]) => `${v.toLocaleString()} ${k}`).join(", ");
  return `${fields || set.key} (${counts || "empty"})`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").slice(0, 19);
}
