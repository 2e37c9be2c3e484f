// One record: its input, why it is (or is not) worth labelling, its nearest training
// records with their labels, where it sits on the map, and its tags (editable with write).
import { useMemo, useState } from "preact/hooks";
import { ApiError, Neighbour, RecordDetail, fetchRecord, post } from "../api";
import { LazyScatter as Scatter } from "../components/LazyScatter";
import { Thumb } from "../components/Thumb";
import { errorText, fmtTime, useAsync } from "../hooks";
import { href, recordPath } from "../router";
import { reasons, signalLabel } from "../signals";
import { Progress, scatterData, useMap } from "./Map";

function Signals({ record }: { record: RecordDetail }) {
  const a = record.assessment;
  if (!a) {
    return <p class="muted">{record.split === "training" ? "A training record: not assessed." : "Not assessed yet (the recommender has not scored it)."}</p>;
  }
  const raw = a.raw_signals ?? {};
  const words = reasons(a.signals, raw, record.inference_class);
  return (
    <div data-testid="signals">
      <p>
        <span class={`verdict ${a.verdict}`}>{a.verdict}</span> score <b>{a.score.toFixed(3)}</b>, percentile{" "}
        <b>{a.percentile.toFixed(1)}</b> among training records.
      </p>
      {words.length > 0 && <ul class="reasons">{words.map((w) => <li key={w}>{w}</li>)}</ul>}
      <table class="signals">
        <thead><tr><th>signal</th><th>level among training</th><th>raw</th></tr></thead>
        <tbody>
          {Object.entries(a.signals).map(([name, level]) => (
            <tr key={name}>
              <td>{signalLabel(name)}</td>
              <td><meter min={0} max={1} value={Number.isFinite(level) ? level : 0} /> {Number.isFinite(level) ? `${Math.round(level * 100)}%` : "—"}</td>
              <td class="num">{raw[name] === undefined || !Number.isFinite(raw[name]) ? "—" : raw[name].toPrecision(3)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Neighbours({ record }: { record: RecordDetail }) {
  const hits = useAsync(async () => {
    const answer = await post<{ results: { neighbours: Neighbour[] }[] }>("/api/v1/query", {
      embedding_set_key: record.embedding_set_key, record_id: record.id, dataset: record.dataset,
      k: 12, filter: { split: "training" },
    });
    return answer.results[0]?.neighbours ?? [];
  }, [record.embedding_set_key, record.dataset, record.id]);
  if (hits.error) return <p class="error">{hits.error}</p>;
  if (!hits.data) return <p class="muted">Searching…</p>;
  if (!hits.data.length) return <p class="muted">No training records found.</p>;
  const predicted = record.inference_class;
  return (
    <ol class="neighbours" data-testid="neighbours">
      {hits.data.map((n) => {
        const label = n.payload.label_class ?? null;
        return (
          <li key={`${n.dataset}/${n.id}`} data-testid="neighbour" data-id={n.id} data-dataset={n.dataset}
            class={predicted && label && label !== predicted ? "disagrees" : ""}>
            <Thumb uri={n.input_uri} size={56} />
            <div>
              <a href={href(recordPath(n.dataset, n.id) + `?set=${encodeURIComponent(record.embedding_set_key)}`)}>{n.id}</a>
              <div>label <b>{label ?? "—"}</b></div>
              <div class="muted">d={n.distance.toFixed(3)}</div>
            </div>
          </li>
        );
      })}
    </ol>
  );
}

function Tags({ record }: { record: RecordDetail }) {
  const [tags, setTags] = useState(record.tags);
  const [text, setText] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const [readOnly, setReadOnly] = useState(false);
  const send = async (add: string[], remove: string[]) => {
    try {
      await post(`/api/v1/datasets/${encodeURIComponent(record.dataset)}/records/tags`, { ids: [record.id], add, remove });
      setTags([...tags.filter((t) => !remove.includes(t)), ...add.filter((t) => !tags.includes(t))]);
      setMessage(null);
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) setReadOnly(true);
      setMessage(errorText(error));
    }
  };
  return (
    <div class="tags" data-testid="tags">
      {tags.map((t) => (
        <span class="chip" key={t}>{t}{!readOnly && <button title={`remove ${t}`} onClick={() => send([], [t])}>×</button>}</span>
      ))}
      {!tags.length && <span class="muted">no tags</span>}
      {!readOnly && (
        <form onSubmit={(e) => { e.preventDefault(); const t = text.trim(); if (t) { send([t], []); setText(""); } }}>
          <input value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} placeholder="add a tag" size={12} />
          <button type="submit">add</button>
        </form>
      )}
      {message && <p class="error" role="alert">{message}</p>}
    </div>
  );
}

function WhereOnMap({ record }: { record: RecordDetail }) {
  const map = useMap(record.embedding_set_key);
  const points = map.ready?.points;
  const data = useMemo(() => (points ? scatterData(points, "split") : null), [points]);
  const index = useMemo(() => {
    if (!points) return -1;
    for (let i = 0; i < points.id.length; i++) if (points.id[i] === record.id && points.dataset[i] === record.dataset) return i;
    return -1;
  }, [points]);
  if (map.error) return <p class="error">{map.error}</p>;
  return (
    <div>
      <Progress pending={map.pending} />
      {data && <Scatter data={data} highlight={index} height={320} />}
      {points && index < 0 && <p class="muted">This record is not on the map (it was computed before it was logged, or sampled out).</p>}
    </div>
  );
}

export function RecordPage({ dataset, id }: { dataset: string; id: string }) {
  const record = useAsync(() => fetchRecord(dataset, id), [dataset, id]);
  if (record.error) return <p class="error" role="alert">{record.error}</p>;
  const r = record.data;
  if (!r) return <p class="muted">Loading…</p>;
  return (
    <section class="record" data-testid="record">
      <div class="record-head">
        <Thumb uri={r.input_uri} size={128} />
        <div>
          <h2>{r.id}</h2>
          <p class="muted">{r.dataset} · {r.split} · logged {fmtTime(r.logged_at)}</p>
          <p>predicted <b>{r.inference_class ?? "—"}</b> · label <b>{r.label_class ?? "—"}</b></p>
          {r.scores && (
            <p class="muted">scores: {Object.entries(r.scores).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}</p>
          )}
          <Tags record={r} />
        </div>
      </div>
      <div class="record-grid">
        <div>
          <h3>Why</h3>
          <Signals record={r} />
          <h3>Nearest training records</h3>
          <Neighbours record={r} />
        </div>
        <div>
          <h3>On the map</h3>
          <WhereOnMap record={r} />
        </div>
      </div>
    </section>
  );
}
