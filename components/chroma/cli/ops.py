"""``chroma status``, ``chroma op ...`` and ``chroma worker``: service control verbs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from chroma import indexjob as ij
from chroma.operations.kinds import KIND_NAMES, kind_of, validate_params

op_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Run, follow, list and cancel operations.",
)
console = Console()

UrlOpt = Annotated[str, typer.Option(envvar="CHROMA_URL", help="API base URL.")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    "--api-key", envvar="CHROMA_API_KEY", show_default=False,
    help="API key sent as 'Authorization: Bearer <key>' (prefer the variable: a flag's "
         "value shows in the process list).")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _request(method: str, url: str, path: str, api_key: str | None = None,
             **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        answer = httpx.request(method, f"{url.rstrip('/')}{path}", timeout=30,
                               headers=headers, **kwargs)
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {url}[/red] ({exc}); is `chroma run` running? "
                      "(--url or CHROMA_URL point elsewhere)")
        raise typer.Exit(2) from None
    _raise_for(answer)
    return answer


def _get(url: str, path: str, api_key: str | None, **params: Any) -> Any:
    return _request("GET", url, path, api_key, params=params).json()


def _raise_for(answer: httpx.Response) -> None:
    if answer.status_code >= 400:
        try:
            message = answer.json().get("message", answer.text)
        except ValueError:
            message = answer.text
        console.print(f"[red]error {answer.status_code}[/red]: {message}", soft_wrap=True)
        raise typer.Exit(1)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status(url: UrlOpt = DEFAULT_URL, api_key: ApiKeyOpt = None) -> None:
    """Print each component (state, pid, uptime, heartbeat, restarts) and the queue."""
    body = _get(url, "/api/v1/status", api_key)
    table = Table(title=f"Chroma {body['version']} ({body['mode']})")
    for column in ("component", "state", "pid", "uptime", "heartbeat", "restarts", "takes"):
        table.add_column(column)
    colours = {"up": "green", "down": "red", "starting": "yellow", "stopped": "dim"}
    for c in body["components"]:
        colour = colours.get(c["state"], "white")
        table.add_row(c["name"], f"[{colour}]{c['state']}[/{colour}]", str(c["pid"] or "-"),
                      _ago(c["uptime_s"]), _ago(c["heartbeat_age_s"]) + " ago"
                      if c["heartbeat_age_s"] is not None else "-",
                      str(c["restarts"]), ", ".join(c["operation_kinds"]))
    console.print(table)
    queue = ", ".join(f"{k}: {n}" for k, n in body["queue_depth"].items()) or "empty"
    console.print(f"queue: {queue}")
    for es in body["embedding_sets"]:
        freshness = "stale" if es["stale"] else "fresh"
        console.print(f"embedding set {es['embedding_set_key'][:12]}: index v"
                      f"{es['index_version'] or 0} ({es['indexed_count']} points, {freshness}),"
                      f" MHB v{es['mhb_version'] or 0}")


@op_app.command("run")
def op_run(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KIND_NAMES)}.")],
    embedding_set: Annotated[str | None, typer.Option(help="Embedding set key.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="key=value, repeatable. A value that is JSON is read as JSON (60, 0.5, true, "
             "\"60\" for the string 60), anything else as text.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until it ends.")] = True,
    local: Annotated[bool, typer.Option(
        help="Execute here against the catalog (CHROMA_DATABASE_URL), not via a worker: "
             "what a Kubernetes Job of an IndexJob runs.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
) -> None:
    """Start an operation (or join the active one of the same kind and set)."""
    params = _parse_params(param or [])
    if local:
        raise typer.Exit(_run_local(kind, embedding_set, params))
    answer = _request("POST", url, "/api/v1/operations", api_key,
                      json={"kind": kind, "embedding_set_key": embedding_set, "params": params})
    op = answer.json()
    verb = "started" if answer.status_code == 201 else "joined active"
    console.print(f"{verb} operation #{op['id']} ({op['kind']})")
    if wait:
        op = _follow(url, op["id"], api_key)
        _print_outcome(op)
        raise typer.Exit(0 if op["state"] == "succeeded" else 1)


def _follow(url: str, op_id: int, api_key: str | None) -> dict[str, Any]:
    with tqdm(total=100, unit="%", desc=f"operation #{op_id}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        while True:
            op = _get(url, f"/api/v1/operations/{op_id}", api_key)
            bar.n = round(op["progress"] * 100)
            bar.set_postfix_str(f"{op['state']} {op['message'] or ''}".strip())
            bar.refresh()
            if op["state"] in ("succeeded", "failed", "cancelled"):
                return op
            time.sleep(0.5)


def _print_outcome(op: dict[str, Any]) -> None:
    colour = "green" if op["state"] == "succeeded" else "red"
    console.print(f"operation #{op['id']} [{colour}]{op['state']}[/{colour}] after "
                  f"{op['attempts']} attempt(s)")
    if op.get("result"):
        console.print(op["result"])
    if op.get("error"):
        console.print(f"[red]{op['error']}[/red]")


def _run_local(kind: str, embedding_set: str | None, params: dict[str, Any]) -> int:
    """Queue (or join) the operation, then claim and run it in this process."""
    from chroma.control.worker import Worker, WorkerServices
    from chroma.settings import Settings

    kind_of(kind)  # an unknown kind fails here, before anything is queued
    validate_params(kind, params)
    services = WorkerServices.open(Settings())
    try:
        op, _ = services.operations.enqueue(kind, embedding_set, params=params,
                                            requested_by="job")
        worker = Worker(services, f"job-{kind}", [kind],
                        lease_s=services.settings.operation_lease_s)
        while True:
            current = services.operations.get(op.id)
            if current.state in ("succeeded", "failed", "cancelled"):
                break
            claimed = services.operations.claim(worker.owner, [kind], worker.lease_s)
            if claimed is None:
                time.sleep(1.0)  # another worker holds it; wait for its outcome
                continue
            worker.run_one(claimed)
        final = services.operations.get(op.id)
        console.print(f"operation #{final.id} {final.state}: {final.result or final.error}")
        return 0 if final.state == "succeeded" else 1
    finally:
        services.close()


@op_app.command("list")
def op_list(
    state: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
) -> None:
    """Recent operations, newest first."""
    params = {k: v for k, v in {"state": state, "kind": kind, "limit": limit}.items() if v}
    body = _get(url, "/api/v1/operations", api_key, **params)
    table = Table()
    for column in ("id", "kind", "embedding set", "state", "progress", "attempts", "duration",
                   "by"):
        table.add_column(column)
    for op in body["data"]:
        table.add_row(str(op["id"]), op["kind"], (op["embedding_set_key"] or "all")[:12],
                      op["state"], f"{op['progress'] * 100:.0f}%", str(op["attempts"]),
                      _ago(op["duration_s"]), op["requested_by"])
    console.print(table)


@op_app.command("cancel")
def op_cancel(operation_id: int, url: UrlOpt = DEFAULT_URL, api_key: ApiKeyOpt = None) -> None:
    """Cancel an operation (queued: at once; running: at its next progress report)."""
    answer = _request("POST", url, f"/api/v1/operations/{operation_id}/cancel", api_key)
    console.print(f"operation #{operation_id}: cancel requested ({answer.json()['state']})")


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


def recommend(
    embedding_set: Annotated[str, typer.Option(help="Embedding set key (see chroma status).")],
    top: Annotated[int, typer.Option(min=1, max=1000, help="How many to show.")] = 50,
    dataset: Annotated[list[str] | None, typer.Option(help="Only these datasets.")] = None,
    diverse: Annotated[bool, typer.Option(help="Skip near-duplicates.")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
) -> None:
    """Print the production records most worth labelling, with why."""
    params: dict[str, Any] = {"embedding_set_key": embedding_set, "limit": top,
                              "diverse": diverse}
    if dataset:
        params["dataset"] = dataset
    body = _get(url, "/api/v1/recommendations", api_key, **params)
    table = Table(title=f"{body['total']} records in the queue (MHB v{body['mhb_version']})")
    for column in ("#", "score", "pctl", "dataset", "id", "class", "input", "why"):
        table.add_column(column)
    for rank, item in enumerate(body["items"], start=1):
        why = ", ".join(f"{name} {level:.2f}" for name, level in sorted(
            item["signals"].items(), key=lambda kv: -kv[1])[:3])
        table.add_row(str(rank), f"{item['score']:.3f}", f"{item['percentile']:.1f}",
                      item["dataset"], item["id"], item["inference_class"] or "-",
                      item["input_uri"] or "-", why)
    console.print(table)
