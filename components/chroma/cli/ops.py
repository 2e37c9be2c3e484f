"""``chroma status``, ``chroma op ...``, ``chroma recommend`` and ``chroma worker``:
service control verbs (output: ``chroma.cli.output``; failures: ``CliError``)."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from tqdm import tqdm

from chroma import indexjob as ij
from chroma.cli.common import (
    DEFAULT_URL,
    ApiKeyOpt,
    CliError,
    DatasetOpt,
    EmbeddingSetOpt,
    FieldOpt,
    OutputOpt,
    UrlOpt,
    choose_set,
    open_client,
)
from chroma.cli.output import (
    Column,
    Format,
    ago,
    emit,
    key_column,
    print_document,
    short_key,
    terminal_width,
)
from chroma.operations.kinds import KIND_NAMES, kind_of, validate_params

if TYPE_CHECKING:  # the client loads numpy and pyarrow: only client commands need it
    from chroma.client import Client

__all__ = ["ApiKeyOpt", "op_app", "recommend", "status", "worker"]

op_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Run, follow, list, show and cancel operations.",
)

FINISHED = ("succeeded", "failed", "cancelled")
POLL_S = 0.5

COMPONENT_COLUMNS = [
    Column("component", lambda c: c["name"]),
    Column("state", lambda c: c["state"]),
    Column("pid", lambda c: c["pid"]),
    Column("uptime", lambda c: ago(c["uptime_s"])),
    Column("heartbeat", lambda c: ago(c["heartbeat_age_s"])),
    Column("restarts", lambda c: c["restarts"]),
    Column("host", lambda c: c["host"], wide_only=True),
    Column("takes", lambda c: c["operation_kinds"], wide_only=True),
]
INDEX_COLUMNS = [
    key_column("embedding set", "embedding_set_key"),
    Column("index", lambda s: f"v{s['index_version'] or 0}"),
    Column("points", lambda s: s["indexed_count"]),
    Column("fresh", lambda s: "no" if s["stale"] else "yes"),
    Column("mhb", lambda s: f"v{s['mhb_version'] or 0}"),
    Column("index lag", lambda s: s["index_lag"], wide_only=True),
    Column("queue lag", lambda s: s["queue_lag"], wide_only=True),
]
OPERATION_COLUMNS = [
    Column("id", lambda o: o["id"]),
    Column("kind", lambda o: o["kind"]),
    key_column("embedding set", "embedding_set_key"),
    Column("state", lambda o: o["state"]),
    Column("progress", lambda o: f"{o['progress'] * 100:.0f}%"),
    Column("duration", lambda o: ago(o["duration_s"])),
    Column("attempts", lambda o: o["attempts"], wide_only=True),
    Column("by", lambda o: o["requested_by"], wide_only=True),
    Column("message", lambda o: o["error"] or o["message"], wide_only=True),
]


def status(url: UrlOpt = DEFAULT_URL, api_key: ApiKeyOpt = None,
           output: OutputOpt = Format.table) -> None:
    """Components (state, pid, uptime, heartbeat, restarts), the operation queue and each
    embedding set's index freshness."""
    with open_client(url, api_key) as client:
        body = client.status()
    if output in (Format.json, Format.yaml):
        print_document(body, output)
        return
    print(f"Chroma {body['version']} ({body['mode']})")
    emit(body["components"], COMPONENT_COLUMNS, output)
    queue = ", ".join(f"{k}: {n}" for k, n in body["queue_depth"].items()) or "empty"
    print(f"\nqueued operations: {queue}")
    if body["embedding_sets"]:
        print()
        emit(body["embedding_sets"], INDEX_COLUMNS, output)


@op_app.command("run")
def op_run(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KIND_NAMES)}.")],
    embedding_set: EmbeddingSetOpt = None,
    dataset: DatasetOpt = None,
    field: FieldOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        help="key=value, repeatable. A value that is JSON is read as JSON (60, 0.5, true, "
             "\"60\" for the string 60), anything else as text.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until it ends.")] = True,
    local: Annotated[bool, typer.Option(
        help="Execute here against the catalog (CHROMA_DATABASE_URL), not via a worker: "
             "what a Kubernetes Job of an IndexJob runs.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Start an operation (or join the active one of the same kind and set); without a
    set it covers every embedding set."""
    params = _parse_params(param or [])
    if local:
        if dataset or field:
            raise CliError("--local takes --embedding-set KEY (or a prefix of it)", code=2)
        raise typer.Exit(_run_local(kind, embedding_set, params))
    with open_client(url, api_key) as client:
        key = choose_set(client, embedding_set, dataset, field, required=False)
        op, created = client.start_operation(kind, key, params)
        verb = "started" if created else "joined active"
        print(f"{verb} operation #{op['id']} ({op['kind']}, embedding set "
              f"{short_key(op['embedding_set_key'])})", file=sys.stderr)
        if wait:
            op = _follow(client, op["id"])
    if output in (Format.json, Format.yaml):
        print_document(op, output)
    elif wait:
        _print_outcome(op)
    if wait and op["state"] != "succeeded":
        raise typer.Exit(1)


def _follow(client: Client, op_id: int) -> dict[str, Any]:
    """Poll the operation until it ends, drawing its ``progress`` (reported by the
    worker with its lease heartbeat) on stderr when stderr is a terminal."""
    # A terminal that reports no size (0x0, e.g. a fresh pty) made tqdm draw nothing.
    size = shutil.get_terminal_size((80, 24))
    with tqdm(total=100, desc=f"operation #{op_id}", file=sys.stderr,
              disable=not sys.stderr.isatty(), leave=False, ncols=size.columns or 80,
              nrows=size.lines or 24,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        while True:
            op = client.operation(op_id)
            bar.n = round(op["progress"] * 100)
            bar.set_postfix_str(f"{op['state']} {op['message'] or ''}".strip(), refresh=False)
            bar.refresh()
            if op["state"] in FINISHED:
                return op
            time.sleep(POLL_S)


def _print_outcome(op: dict[str, Any]) -> None:
    """State, then the result's fields and the error as ``name: value`` lines, wrapped
    (not cut: an error message is read whole) to the terminal's width."""
    print(f"operation #{op['id']} {op['state']} after {op['attempts']} attempt(s)"
          f" in {ago(op['duration_s'])}")
    lines = [(name, _plain(value)) for name, value in (op.get("result") or {}).items()]
    if op.get("error"):
        lines.append(("error", op["error"]))
    for name, text in lines:
        print(textwrap.fill(f"{name}: {text}", width=terminal_width(), initial_indent="  ",
                            subsequent_indent="    ", break_on_hyphens=False))


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "-"
    return str(value)


def _run_local(kind: str, embedding_set: str | None, params: dict[str, Any]) -> int:
    """Queue (or join) the operation, then claim and run it in this process."""
    from chroma.control.worker import Worker, WorkerServices
    from chroma.settings import Settings

    kind_of(kind)  # an unknown kind fails here, before anything is queued
    validate_params(kind, params)
    services = WorkerServices.open(Settings())
    try:
        if embedding_set is not None:  # a prefix names its set here too
            embedding_set = services.catalog.resolve_key(embedding_set)
        op, _ = services.operations.enqueue(kind, embedding_set, params=params,
                                            requested_by="job")
        worker = Worker(services, f"job-{kind}", [kind],
                        lease_s=services.settings.operation_lease_s)
        while True:
            current = services.operations.get(op.id)
            if current.state in FINISHED:
                break
            claimed = services.operations.claim(worker.owner, [kind], worker.lease_s)
            if claimed is None:
                time.sleep(1.0)  # another worker holds it; wait for its outcome
                continue
            worker.run_one(claimed)
        final = services.operations.get(op.id)
        print(f"operation #{final.id} {final.state}: {_plain(final.result or final.error)}")
        return 0 if final.state == "succeeded" else 1
    finally:
        services.close()


@op_app.command("list")
def op_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed "
                                                   "or cancelled.")] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    embedding_set: EmbeddingSetOpt = None,
    dataset: DatasetOpt = None,
    field: FieldOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Recent operations, newest first."""
    with open_client(url, api_key) as client:
        key = choose_set(client, embedding_set, dataset, field, required=False)
        page = client.operations(state=state, kind=kind, embedding_set_key=key, limit=limit)
    emit(page["data"], OPERATION_COLUMNS, output, document=page["data"])


@op_app.command("get")
def op_get(
    operation_id: Annotated[int, typer.Argument(min=1)],
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """One operation: its state, progress, result or error."""
    with open_client(url, api_key) as client:
        op = client.operation(operation_id)
    if output in (Format.json, Format.yaml):
        print_document(op, output)
        return
    emit([op], OPERATION_COLUMNS, output)
    if op["state"] in FINISHED:
        print()
        _print_outcome(op)


@op_app.command("cancel")
def op_cancel(operation_id: Annotated[int, typer.Argument(min=1)], url: UrlOpt = DEFAULT_URL,
              api_key: ApiKeyOpt = None) -> None:
    """Cancel an operation (queued: at once; running: at its next progress report)."""
    with open_client(url, api_key) as client:
        op = client.cancel_operation(operation_id)
    print(f"operation #{operation_id}: cancel requested ({op['state']})")


def worker(
    name: Annotated[str, typer.Option(help="Component name shown in status.")] = "worker",
    kinds: Annotated[str, typer.Option(help="Comma-separated operation kinds to take.")]
    = ",".join(KIND_NAMES),
) -> None:
    """Run a worker that takes queued operations (the cluster's worker Deployment runs this)."""
    from chroma.control.worker import run_worker

    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = set(chosen) - set(KIND_NAMES)
    if unknown:
        raise typer.BadParameter(f"unknown kinds {sorted(unknown)}")
    run_worker(name, chosen)


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs -> the operation's params, read as the IndexJob contract writes
    them (``chroma.indexjob.parse_param``: JSON values as JSON, anything else as text)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        try:
            key, value = ij.parse_param(pair)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        params[key] = value
    return params


RECOMMENDATION_COLUMNS = [
    Column("#", lambda i: i["rank"]),
    Column("score", lambda i: f"{i['score']:.3f}"),
    Column("pctl", lambda i: f"{i['percentile']:.1f}"),
    Column("dataset", lambda i: i["dataset"]),
    Column("id", lambda i: i["id"]),
    Column("class", lambda i: i["inference_class"]),
    Column("why", lambda i: _why(i["signals"], 2), wide_cell=lambda i: _why(i["signals"], 5)),
    Column("input", lambda i: i["input_uri"], wide_only=True),
]


def _why(signals: dict[str, float], top: int) -> str:
    strongest = sorted(signals.items(), key=lambda kv: -kv[1])[:top]
    return ",".join(f"{name}={level:.2f}" for name, level in strongest) or "-"


def recommend(
    embedding_set: EmbeddingSetOpt = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", show_default=False,
        help="Only these datasets (repeatable); the first also names the embedding set "
             "when no other option does.")] = None,
    field: FieldOpt = None,
    top: Annotated[int, typer.Option(min=1, max=1000, help="How many to show.")] = 50,
    diverse: Annotated[bool, typer.Option(help="Skip near-duplicates.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """The production records most worth labelling, best first, with why."""
    with open_client(url, api_key) as client:
        by_dataset = dataset[0] if dataset and not (embedding_set or field) else None
        key = choose_set(client, embedding_set, by_dataset, field)
        assert key is not None
        page = client.recommendations(key, limit=top, datasets=dataset or (), diverse=diverse)
    items = [{"rank": rank, **item} for rank, item in enumerate(page["items"], start=1)]
    if output in (Format.json, Format.yaml):
        print_document(page, output)
        return
    print(f"{page['total']} records in the queue of embedding set {short_key(key)} "
          f"(MHB v{page['mhb_version']})")
    if items:
        emit(items, RECOMMENDATION_COLUMNS, output)
