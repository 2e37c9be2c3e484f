"""Entry point of the ``chroma`` console script."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from chroma.cli.ops import ApiKeyOpt, op_app, recommend, status, worker

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Chroma service: embeddings in, labelling queue out.",
)
keys_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                       help="API keys (scopes read < write < admin).")
app.add_typer(op_app, name="op")
app.add_typer(keys_app, name="keys")
app.command()(status)
app.command()(worker)
app.command()(recommend)

HostOpt = Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")]
PortOpt = Annotated[int | None, typer.Option(help="Port to bind (default 8000).")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives (./chroma-data).")
]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Allow a non-loopback --host without API keys: every route open to "
                       "whoever can reach it (env CHROMA_INSECURE=true).")]


def _apply(host: str | None, port: int | None, data_dir: Path | None,
           insecure: bool = False) -> None:
    """CLI options win over the environment: pass them on as CHROMA_* variables."""
    for name, value in (("HOST", host), ("PORT", port), ("DATA_DIR", data_dir)):
        if value is not None:
            os.environ[f"CHROMA_{name}"] = str(value)
    if insecure:
        os.environ["CHROMA_INSECURE"] = "true"


def _check_startup(command: str) -> None:
    """Refuse unreadable keys, or a reachable address without keys, before anything starts."""
    from chroma.api.auth import InsecureBind, InvalidKeys, check_startup
    from chroma.settings import Settings

    try:
        check_startup(Settings())
    except (InsecureBind, InvalidKeys) as exc:
        print(f"chroma {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@app.command()
def run(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None,
        insecure: InsecureOpt = False) -> None:
    """Start everything embedded: PostgreSQL (unless CHROMA_DATABASE_URL is set) and the API."""
    _apply(host, port, data_dir, insecure)
    _check_startup("run")
    from chroma.control.embedded import run_embedded

    run_embedded()


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, insecure: InsecureOpt = False) -> None:
    """Start only the API (needs CHROMA_DATABASE_URL); the cluster's API pods run this."""
    _apply(host, port, None, insecure)
    _check_startup("serve")
    from chroma.control.embedded import serve_api
    from chroma.settings import Settings

    serve_api(Settings())


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="A JSONL file written by a client session's save()."
    )],
    url: Annotated[str, typer.Option(envvar="CHROMA_URL", help="API base URL.")]
    = "http://127.0.0.1:8000",
    batch_size: Annotated[int, typer.Option(min=1)] = 5000,
    api_key: ApiKeyOpt = None,
) -> None:
    """Upload a buffered JSONL file (one record per line, shared fields on each)."""
    from chroma.client import Client
    from chroma.errors import ChromaError

    try:
        # A progress bar only for a person watching: in a log it is noise around errors.
        with Client(url, api_key=api_key, progress=sys.stderr.isatty()) as client:
            result = client.upload_jsonl(file, batch_size=batch_size)
    except ChromaError as exc:
        print(f"chroma upload: {exc.message}", file=sys.stderr)
        raise typer.Exit(1) from None
    typer.echo(f"uploaded {result['count']} records from {file}")


@keys_app.command("new")
def keys_new(
    scope: Annotated[str, typer.Option(
        help="read (GETs and queries), write (+ log, tag, delete) or admin (+ operations, "
             "dataset registration).")] = "read",
) -> None:
    """Print a fresh random key as a '<scope> <key>' line for CHROMA_API_KEYS_FILE."""
    from chroma.api.auth import Scope, key_lines

    if scope not in Scope.__members__:
        raise typer.BadParameter("read, write or admin", param_hint="--scope")
    (line,) = key_lines([Scope[scope]])
    typer.echo(line)


@app.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the OpenAPI YAML.")]
    = Path("chroma-api.yaml"),
) -> None:
    """Write the REST contract (chroma-api.yaml) from the app's models."""
    from chroma.api.contract import write_contract

    write_contract(output)
    typer.echo(f"wrote {output}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request at INFO: noise on the CLI's stderr, around its one-line errors.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
