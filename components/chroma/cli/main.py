"""Entry point of the ``chroma`` console script.

:func:`main` is where every failure becomes one line on stderr and a non-zero exit: a
usage error (exit 2), a ``CliError`` or ``chroma.errors`` error (exit 1, or the error's
code), anything unexpected (exit 1; ``-v`` shows its traceback). Client commands log
nothing below WARNING unless ``-v`` (INFO, e.g. each HTTP request) or ``-vv`` (DEBUG);
the server commands (:data:`SERVER_COMMANDS`) log as their settings say.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from chroma.cli.common import DEFAULT_URL, ApiKeyOpt, CliError, UrlOpt, open_client
from chroma.cli.get import get_app
from chroma.cli.ops import op_app, recommend, status, worker

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Chroma service: embeddings in, labelling queue out.",
)
keys_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                       help="API keys (scopes read < write < admin).")
app.add_typer(op_app, name="op")
app.add_typer(get_app, name="get")
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
    url: UrlOpt = DEFAULT_URL,
    batch_size: Annotated[int, typer.Option(min=1)] = 5000,
    api_key: ApiKeyOpt = None,
) -> None:
    """Upload a buffered JSONL file (one record per line, shared fields on each).

    The file is read whole first: a malformed line stops it before anything is sent."""
    # A progress bar only for a person watching: in a log it is noise around errors.
    with open_client(url, api_key, progress=sys.stderr.isatty()) as client:
        result = client.upload_jsonl(file, batch_size=batch_size)
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


SERVER_COMMANDS = frozenset({"run", "serve", "worker"})
"""Commands that are servers: they log as CHROMA_LOG_LEVEL says, not quietly."""
VERBOSE_FLAGS = {"-v": 1, "--verbose": 1, "-vv": 2}
GROUPS = frozenset({"op", "get", "keys"})


@app.callback()
def root(
    ctx: typer.Context,
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True,
        help="Client commands: -v logs each HTTP request, -vv everything (default: only "
             "warnings). May stand anywhere on the line.")] = 0,
) -> None:
    """Chroma service: embeddings in, labelling queue out."""
    if ctx.invoked_subcommand not in SERVER_COMMANDS:
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
        logging.getLogger().setLevel(level)
        for name in ("httpx", "httpcore"):  # libraries' own levels, if any, follow ours
            logging.getLogger(name).setLevel(level)


def _verbosity_first(args: list[str]) -> tuple[list[str], int]:
    """Move ``-v``/``-vv``/``--verbose`` to the front (kubectl takes them anywhere)."""
    cut = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:cut] if a in VERBOSE_FLAGS]
    rest = [a for a in args[:cut] if a not in VERBOSE_FLAGS] + args[cut:]
    return flags + rest, sum(VERBOSE_FLAGS[f] for f in flags)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit with its code, every failure said in one line."""
    from chroma.logs import configure_logging
    from chroma.settings import Settings

    args, verbosity = _verbosity_first(list(sys.argv[1:] if argv is None else argv))
    words = [a for a in args if not a.startswith("-")]
    command = " ".join(words[:2] if words[:1] and words[0] in GROUPS else words[:1])
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
        code = app(args=args, prog_name="chroma", standalone_mode=False)
    except BaseException as exc:  # the one place where errors become a line
        code = _report(exc, command, verbosity)
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException, command: str, verbosity: int) -> int:
    """Say ``exc`` in one line on stderr; the exit code."""
    from chroma.errors import ChromaError

    where = f"chroma {command}" if command else "chroma"
    if isinstance(exc, BrokenPipeError):  # e.g. `chroma get datasets | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `chroma op`
        typer.echo(ctx.get_help())
        return 0
    if isinstance(exc, TyperException):  # usage errors (exit 2) name the command's help
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message, code = f"{exc.format_message()}{hint}", exc.exit_code
    elif isinstance(exc, CliError):
        message, code = exc.message, exc.code
    elif isinstance(exc, ChromaError):
        message, code = exc.message, 1
    elif isinstance(exc, KeyboardInterrupt | typer.Abort):
        message, code = "interrupted", 130
    else:
        message, code = f"unexpected {type(exc).__name__}: {exc} (-v shows where)", 1
        if verbosity:
            traceback.print_exception(exc, file=sys.stderr)
    print(f"{where}: {' '.join(str(message).split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    main()
