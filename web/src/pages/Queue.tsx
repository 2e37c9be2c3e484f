// The labelling queue: ranked production records of one embedding set, why each is
// there, filters, cursor paging, selection (click, shift-click, x) and "mark labelled".
import { useEffect, useRef, useState } from "preact/hooks";
import { Dataset, QueuePage as Page, get, markLabelled, fetchRecord } from "../api";
import { Thumb } from "../components/Thumb";
import { SetPicker, errorText, fmtTime, useAsync, useEmbeddingSet } from "../hooks";
import { href, navigate, recordPath, useLocation } from "../router";
import { loadSelection } from "../selection";
import { why } from "../signals";

const PAGE_SIZE = 50;

interface Row {
  id: string;
  dataset: string;
  input_uri: string | null;
  score: number | null;
  percentile: number | null;
  verdict: string | null;
  signals: Record<string, number>;
  raw_signals: Record<string, number>;
  inference_class: string | null;
  tags: string[];
  logged_at: string | null;
}

const rowKey = (row: { dataset: string; id: string }) => `${row.dataset}\u0000${row.id}`;

function splitList(text: string | null): string[] {
  return (text ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

function toIso(local: string | null): string | undefined {
  return local ? new Date(local).toISOString() : undefined;
}

interface Filters {
  dataset: string;
  cls: string;
  tags: string;
  from: string;
  until: string;
  diverse: boolean;
}

function filtersFrom(query: URLSearchParams): Filters {
  return {
    dataset: query.get("dataset") ?? "",
    cls: query.get("class") ?? "",
    tags: query.get("tags") ?? "",
    from: query.get("from") ?? "",
    until: query.get("until") ?? "",
    diverse: query.get("diverse") === "1",
  };
}

function FilterBar({ datasets, initial, onApply }: { datasets: Dataset[]; initial: Filters; onApply: (f: Filters) => void }) {
  const [f, setF] = useState(initial);
  useEffect(() => setF(initial), [JSON.stringify(initial)]);
  const field = (name: keyof Filters) => (e: Event) => {
    const target = e.target as HTMLInputElement;
    setF({ ...f, [name]: target.type === "checkbox" ? target.checked : target.value });
  };
  return (
    <form class="filters" onSubmit={(e) => { e.preventDefault(); onApply(f); }}>
      <label>Dataset{" "}
        <select name="dataset" value={f.dataset} onChange={field("dataset")}>
          <option value="">all</option>
          {datasets.map((d) => <option value={d.name} key={d.name}>{d.name}</option>)}
        </select>
      </label>
      <label>Predicted class <input name="class" value={f.cls} onInput={field("cls")} placeholder="a, b" size={8} /></label>
      <label>Tags <input name="tags" value={f.tags} onInput={field("tags")} placeholder="any of" size={8} /></label>
      <label>From <input type="datetime-local" name="from" value={f.from} onInput={field("from")} /></label>
      <label>Until <input type="datetime-local" name="until" value={f.until} onInput={field("until")} /></label>
      <label><input type="checkbox" name="diverse" checked={f.diverse} onChange={field("diverse")} /> diverse</label>
      <button type="submit">Apply</button>
    </form>
  );
}

async function mapSelectionRows(): Promise<Row[]> {
  // Records picked on the map: their assessments, highest priority first (at most 200).
  const picked = (loadSelection()?.picked ?? []).filter((p) => p.split === "production");
  picked.sort((a, b) => (b.priority ?? -1) - (a.priority ?? -1));
  const details = await Promise.all(picked.slice(0, 200).map((p) => fetchRecord(p.dataset, p.id)));
  return details
    .filter((d) => d.label_class === null)
    .map((d) => ({
      id: d.id, dataset: d.dataset, input_uri: d.input_uri,
      score: d.assessment?.score ?? null, percentile: d.assessment?.percentile ?? null,
      verdict: d.assessment?.verdict ?? null, signals: d.assessment?.signals ?? {},
      raw_signals: d.assessment?.raw_signals ?? {}, inference_class: d.inference_class,
      tags: d.tags, logged_at: d.logged_at,
    }));
}

export function QueuePage() {
  const location = useLocation();
  const { sets, key, choose, error: setsError } = useEmbeddingSet();
  const fromMap = location.query.get("selection") === "map";
  const filters = filtersFrom(location.query);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [pageIndex, setPageIndex] = useState(0);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [focus, setFocus] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);
  const anchor = useRef<number | null>(null);
  const filterKey = `${key}|${location.query.toString()}`;

  useEffect(() => { setCursors([null]); setPageIndex(0); setSelected(new Set()); setFocus(0); }, [filterKey]);

  const datasets = useAsync(
    async () => key ? (await get<{ data: Dataset[] }>("/api/v1/datasets", { embedding_set_key: key })).data.filter((d) => d.split === "production") : [],
    [key],
  );
  const page = useAsync<{ rows: Row[]; next: string | null; total: number }>(async () => {
    if (!key) return { rows: [], next: null, total: 0 };
    if (fromMap) {
      const rows = await mapSelectionRows();
      return { rows, next: null, total: rows.length };
    }
    const answer = await get<Page>("/api/v1/recommendations", {
      embedding_set_key: key, limit: PAGE_SIZE, cursor: cursors[pageIndex],
      dataset: filters.dataset ? [filters.dataset] : undefined,
      inference_class: splitList(filters.cls), tags: splitList(filters.tags),
      logged_from: toIso(filters.from), logged_until: toIso(filters.until),
      diverse: filters.diverse || undefined,
    });
    return { rows: answer.items, next: answer.next_cursor, total: answer.total };
  }, [filterKey, pageIndex, cursors[pageIndex]]);
  const rows = page.data?.rows ?? [];

  const applyFilters = (f: Filters) => {
    const query = new URLSearchParams();
    if (key) query.set("set", key);
    if (f.dataset) query.set("dataset", f.dataset);
    if (f.cls) query.set("class", f.cls);
    if (f.tags) query.set("tags", f.tags);
    if (f.from) query.set("from", f.from);
    if (f.until) query.set("until", f.until);
    if (f.diverse) query.set("diverse", "1");
    navigate(`/queue?${query}`);
  };

  const toggle = (index: number, shift: boolean) => {
    const from = anchor.current;
    anchor.current = index;
    setSelected((previous) => {
      const next = new Set(previous);
      const target = !next.has(rowKey(rows[index]));
      const [lo, hi] = shift && from !== null ? [Math.min(from, index), Math.max(from, index)] : [index, index];
      for (let i = lo; i <= hi; i++) {
        if (target) next.add(rowKey(rows[i])); else next.delete(rowKey(rows[i]));
      }
      return next;
    });
  };

  const mark = async () => {
    const chosen = rows.filter((r) => selected.has(rowKey(r)));
    try {
      const count = await markLabelled(chosen);
      setNotice(`Marked ${count} record${count === 1 ? "" : "s"} labelled.`);
      setSelected(new Set());
      page.reload();
    } catch (error) {
      setNotice(errorText(error));
    }
  };

  // The key handler reads the latest rows and focus through a ref: keys pressed faster
  // than a render (and the effect that would re-bind the handler) must not act on stale
  // state (a test caught "k" then Enter opening the row below).
  const live = useRef({ rows, focus, toggle });
  live.current = { rows, focus, toggle };
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const target = event.target as HTMLElement;
      if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || event.metaKey || event.ctrlKey) return;
      const { rows: shown, focus: at, toggle: flip } = live.current;
      if (!shown.length) return;
      const move = (to: number) => {
        live.current.focus = to;
        setFocus(to);
      };
      if (event.key === "j") move(Math.min(shown.length - 1, at + 1));
      else if (event.key === "k") move(Math.max(0, at - 1));
      else if (event.key === "x") flip(at, event.shiftKey);
      else if (event.key === "Enter") navigate(recordPath(shown[at].dataset, shown[at].id) + `?set=${encodeURIComponent(key ?? "")}`);
      else return;
      event.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [key]);
  useEffect(() => {
    document.querySelector(`[data-index="${focus}"]`)?.scrollIntoView({ block: "nearest" });
  }, [focus]);

  const start = pageIndex * PAGE_SIZE;
  return (
    <section>
      <div class="toolbar">
        <SetPicker sets={sets} value={key} onChange={choose} />
        {page.data && (
          <span class="muted" data-testid="queue-total">
            {fromMap ? `${page.data.total} selected on the map` : `${page.data.total.toLocaleString()} in the queue`}
          </span>
        )}
        {fromMap && <a href={href(`/queue?set=${encodeURIComponent(key ?? "")}`)}>back to the whole queue</a>}
      </div>
      {!fromMap && <FilterBar datasets={datasets.data ?? []} initial={filters} onApply={applyFilters} />}
      <div class="toolbar">
        <button data-testid="mark-labelled" disabled={!selected.size} onClick={mark}>
          Mark {selected.size || ""} labelled
        </button>
        <span class="muted">keys: j/k move, x select, shift-click a range, enter opens</span>
        {notice && <span class="notice" data-testid="notice">{notice}</span>}
      </div>
      {(setsError || page.error) && <p class="error" role="alert">{setsError || page.error}</p>}
      {!sets.length && !setsError && !page.loading && <p class="muted">No embedding sets yet: log some records.</p>}
      <table class="queue" data-testid="queue-table" aria-busy={page.loading}>
        <thead>
          <tr><th></th><th>#</th><th></th><th>id</th><th>dataset</th><th>predicted</th><th>score</th><th>pctl</th><th>verdict</th><th>why</th><th>tags</th><th>logged</th></tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr
              key={rowKey(row)}
              data-testid="queue-row"
              data-id={row.id}
              data-dataset={row.dataset}
              data-index={i}
              class={`${i === focus ? "focus" : ""} ${selected.has(rowKey(row)) ? "selected" : ""}`}
              onClick={() => setFocus(i)}
            >
              <td>
                <input type="checkbox" aria-label={`select ${row.id}`} checked={selected.has(rowKey(row))}
                  onClick={(e) => { e.stopPropagation(); toggle(i, (e as MouseEvent).shiftKey); }} />
              </td>
              <td class="num">{start + i + 1}</td>
              <td><Thumb uri={row.input_uri} /></td>
              <td><a href={href(recordPath(row.dataset, row.id) + `?set=${encodeURIComponent(key ?? "")}`)}>{row.id}</a></td>
              <td>{row.dataset}</td>
              <td>{row.inference_class ?? "—"}</td>
              <td class="num">{row.score?.toFixed(3) ?? "—"}</td>
              <td class="num">{row.percentile === null ? "—" : row.percentile.toFixed(1)}</td>
              <td><span class={`verdict ${row.verdict}`}>{row.verdict ?? "—"}</span></td>
              <td class="why">{why(row.signals, row.raw_signals, row.inference_class)}</td>
              <td>{row.tags.join(", ")}</td>
              <td class="muted">{fmtTime(row.logged_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {page.data && !rows.length && <p class="muted" data-testid="queue-empty">Nothing to label here.</p>}
      {!fromMap && (
        <div class="pager">
          <button data-testid="prev" disabled={pageIndex === 0} onClick={() => setPageIndex(pageIndex - 1)}>← prev</button>
          <span>page {pageIndex + 1}</span>
          <button data-testid="next" disabled={!page.data?.next}
            onClick={() => { setCursors([...cursors.slice(0, pageIndex + 1), page.data!.next]); setPageIndex(pageIndex + 1); }}>
            next →
          </button>
        </div>
      )}
    </section>
  );
}
