// The embedding map: the server's 2-D projection of training and production records,
// coloured by split, class or priority, with box/lasso selection that opens the records.
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, MapPoints, MapReady, Operation, fetchMap, get } from "../api";
import { ColourBy, Mode, colour } from "../components/colours";
import { LazyScatter as Scatter } from "../components/LazyScatter";
import { SetPicker, errorText, fmtTime, useEmbeddingSet } from "../hooks";
import { href, navigate, recordPath, useLocation } from "../router";
import { saveSelection } from "../selection";

export interface MapState {
  ready: MapReady | null;
  pending: { operation: number; progress: number; message: string | null } | null;
  error: string | null;
}

/** Fetches the map of a set, polling while the server computes it (202). */
export function useMap(key: string | null, limit?: number): MapState {
  const [state, setState] = useState<MapState>({ ready: null, pending: null, error: null });
  useEffect(() => {
    if (!key) return;
    let live = true;
    let timer = 0;
    setState({ ready: null, pending: null, error: null });
    const poll = async () => {
      try {
        const answer = await fetchMap(key, limit);
        if (!live) return;
        if (answer.body.status === "ready") {
          setState({ ready: answer.body, pending: null, error: null });
          return;
        }
        const id = answer.body.operation_id;
        const op = await get<Operation>(`/api/v1/operations/${id}`).catch(() => null);
        if (!live) return;
        if (op && (op.state === "failed" || op.state === "cancelled")) {
          setState({ ready: null, pending: null, error: `The map operation ${id} ${op.state}: ${op.error ?? op.message ?? ""}` });
          return;
        }
        setState({ ready: null, pending: { operation: id, progress: op?.progress ?? 0, message: op?.message ?? null }, error: null });
        timer = window.setTimeout(poll, 1000);
      } catch (error) {
        if (!live) return;
        // A refusal (401/403/404/422) ends the wait; anything else (a restart, a timeout,
        // a 503) is retried: the map is worth waiting for.
        const final = error instanceof ApiError && [401, 403, 404, 422].includes(error.status);
        setState((s) => ({ ...s, error: errorText(error) + (final ? "" : " (retrying)") }));
        if (!final) timer = window.setTimeout(poll, 3000);
      }
    };
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [key, limit]);
  return state;
}

export function scatterData(points: MapPoints, by: ColourBy) {
  const { category, palette, legend } = colour(by, points);
  return { x: Float32Array.from(points.x), y: Float32Array.from(points.y), category, palette, legend };
}

export function Progress({ pending }: { pending: MapState["pending"] }) {
  if (!pending) return null;
  return (
    <div class="pending" data-testid="map-pending">
      Computing the map (operation {pending.operation})…
      <progress max={1} value={pending.progress} /> {Math.round(pending.progress * 100)}%
      {pending.message && <span class="muted"> {pending.message}</span>}
    </div>
  );
}

export function MapPage() {
  const { sets, key, choose, error: setsError } = useEmbeddingSet();
  const limit = Number(useLocation().query.get("limit")) || undefined; // points the server samples
  const map = useMap(key, limit);
  const [by, setBy] = useState<ColourBy>("split");
  const [mode, setMode] = useState<Mode>("pan");
  const [picked, setPicked] = useState<number[]>([]);
  const points = map.ready?.points;
  const data = useMemo(() => (points ? scatterData(points, by) : null), [points, by]);
  useEffect(() => setPicked([]), [points]);

  const openInQueue = () => {
    if (!points || !key) return;
    saveSelection(key, picked.map((i) => ({ id: points.id[i], dataset: points.dataset[i], split: points.split[i], priority: points.priority[i] })));
    navigate(`/queue?set=${encodeURIComponent(key)}&selection=map`);
  };
  const production = points ? picked.filter((i) => points.split[i] === "production").length : 0;

  return (
    <section>
      <div class="toolbar">
        <SetPicker sets={sets} value={key} onChange={choose} />
        <label>Colour by{" "}
          <select data-testid="colour-by" value={by} onChange={(e) => setBy((e.target as HTMLSelectElement).value as ColourBy)}>
            <option value="split">split</option>
            <option value="class">class</option>
            <option value="priority">priority</option>
          </select>
        </label>
        <span class="modes" role="group">
          {(["pan", "box", "lasso"] as Mode[]).map((m) => (
            <button key={m} data-testid={`mode-${m}`} class={mode === m ? "active" : ""} onClick={() => setMode(m)}>
              {m === "pan" ? "pan / zoom" : m}
            </button>
          ))}
        </span>
        {map.ready && (
          <span class="muted" data-testid="map-info">
            {map.ready.count.toLocaleString()} points
            {map.ready.total && map.ready.total > map.ready.count ? ` (a sample of ${map.ready.total.toLocaleString()})` : ""}
            {" "}· {map.ready.method} · computed {fmtTime(map.ready.computed_at)}
          </span>
        )}
      </div>
      {(setsError || map.error) && <p class="error" role="alert">{setsError || map.error}</p>}
      <Progress pending={map.pending} />
      <div class="map-layout">
        <div class="map-main">
          {data && <Scatter data={data} mode={mode} onSelect={setPicked} />}
          {data && (
            <div class="legend">
              {data.legend.slice(0, 24).map(([name, c]) => (
                <span key={name}><i style={{ background: c }} />{name}</span>
              ))}
            </div>
          )}
        </div>
        <aside class="picked" data-testid="selection">
          <h3>Selection <span data-testid="selection-count">{picked.length}</span></h3>
          {!picked.length && <p class="muted">Choose box or lasso and drag over the map.</p>}
          {picked.length > 0 && (
            <button data-testid="open-in-queue" disabled={!production} onClick={openInQueue}>
              Open {production} production record{production === 1 ? "" : "s"} in the queue
            </button>
          )}
          <ul>
            {points && picked.slice(0, 500).map((i) => (
              <li key={i} data-testid="selected-id" data-id={points.id[i]} data-dataset={points.dataset[i]}>
                <a href={href(recordPath(points.dataset[i], points.id[i]) + `?set=${encodeURIComponent(key ?? "")}`)}>{points.id[i]}</a>
                <span class="muted"> {points.split[i]} {points.split[i] === "training" ? points.label_class[i] ?? "" : points.inference_class[i] ?? ""}</span>
              </li>
            ))}
          </ul>
          {picked.length > 500 && <p class="muted">and {picked.length - 500} more</p>}
        </aside>
      </div>
    </section>
  );
}
