// What `chroma status` shows: components, queued work, operations with progress, and
// how fresh each embedding set's index and labelling queue are. Refreshes every 2 s.
import { useEffect } from "preact/hooks";
import { Operation, Status, get } from "../api";
import { fmtTime, useAsync } from "../hooks";

function seconds(value: number | null): string {
  if (value === null) return "—";
  if (value < 120) return `${value.toFixed(0)} s`;
  if (value < 7200) return `${(value / 60).toFixed(0)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

function Operations({ ops }: { ops: Operation[] }) {
  return (
    <table data-testid="operations">
      <thead><tr><th>id</th><th>kind</th><th>set</th><th>state</th><th>progress</th><th>message</th><th>created</th><th>took</th></tr></thead>
      <tbody>
        {ops.map((op) => (
          <tr key={op.id} class={`op ${op.state}`}>
            <td class="num">{op.id}</td>
            <td>{op.kind}</td>
            <td class="key">{op.embedding_set_key ?? "all"}</td>
            <td><span class={`state ${op.state}`}>{op.state}</span>{op.attempts > 1 && <span class="muted"> (attempt {op.attempts})</span>}</td>
            <td><progress max={1} value={op.progress} /> {Math.round(op.progress * 100)}%</td>
            <td class="message">{op.error ?? op.message ?? ""}</td>
            <td class="muted">{fmtTime(op.created_at)}</td>
            <td class="num">{op.duration_s === null ? "—" : `${op.duration_s.toFixed(1)} s`}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function ServicePage() {
  const status = useAsync(() => get<Status>("/api/v1/status"), []);
  const ops = useAsync(() => get<{ data: Operation[] }>("/api/v1/operations", { limit: 30 }), []);
  useEffect(() => {
    const timer = setInterval(() => { status.reload(); ops.reload(); }, 2000);
    return () => clearInterval(timer);
  }, []);
  const s = status.data;
  if (status.error) return <p class="error" role="alert">{status.error}</p>;
  if (!s) return <p class="muted">Loading…</p>;
  const queued = Object.entries(s.queue_depth).filter(([, n]) => n > 0);
  return (
    <section class="service" data-testid="service">
      <p>Mode <b>{s.mode}</b> · version {s.version} · queued operations:{" "}
        {queued.length ? queued.map(([k, n]) => `${k} ${n}`).join(", ") : "none"}</p>
      <h3>Components</h3>
      <table data-testid="components">
        <thead><tr><th>name</th><th>kind</th><th>state</th><th>pid</th><th>host</th><th>uptime</th><th>heartbeat</th><th>restarts</th><th>runs</th><th>last error</th></tr></thead>
        <tbody>
          {s.components.map((c) => (
            <tr key={`${c.host}/${c.name}/${c.pid}`}>
              <td>{c.name}</td><td>{c.kind}</td><td><span class={`state ${c.state}`}>{c.state}</span></td>
              <td class="num">{c.pid ?? "—"}</td><td>{c.host ?? "—"}</td><td class="num">{seconds(c.uptime_s)}</td>
              <td class="num">{c.heartbeat_age_s === null ? "—" : `${seconds(c.heartbeat_age_s)} ago`}</td>
              <td class="num">{c.restarts}</td><td class="muted">{c.operation_kinds.join(", ")}</td>
              <td class="message">{c.last_error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Freshness</h3>
      <table data-testid="freshness">
        <thead><tr><th>embedding set</th><th>index version</th><th>indexed</th><th>index lag</th><th>queue lag</th><th>MHB version</th><th>index updated</th></tr></thead>
        <tbody>
          {s.embedding_sets.map((e) => (
            <tr key={e.embedding_set_key}>
              <td class="key">{e.embedding_set_key}</td>
              <td class="num">{e.index_version ?? "—"}</td>
              <td class="num">{e.indexed_count.toLocaleString()}</td>
              <td class="num"><span class={e.index_lag ? "lag" : "fresh"}>{e.index_lag ? `${e.index_lag} changes behind` : "up to date"}</span></td>
              <td class="num"><span class={e.queue_lag ? "lag" : "fresh"}>{e.queue_lag ? `${e.queue_lag} changes behind` : "up to date"}</span></td>
              <td class="num">{e.mhb_version ?? "—"}</td>
              <td class="muted">{fmtTime(e.index_updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Operations</h3>
      {ops.error ? <p class="error">{ops.error}</p> : <Operations ops={ops.data?.data ?? s.recent_operations} />}
    </section>
  );
}
