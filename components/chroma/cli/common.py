"""What the client commands share: their options, the client they open, how they name an
embedding set (key prefix, ``--dataset`` or ``--field``), and :class:`CliError`.

Every failure of a command is one line on stderr and a non-zero exit
(``chroma.cli.main`` prints it): a :class:`CliError` or a ``chroma.errors`` error the
client raised (a server's 4xx message, ``Unreachable`` for a server that is down).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chroma.cli.output import Format

if TYPE_CHECKING:  # the client loads numpy and pyarrow; `chroma run` imports this module
    from chroma.client import Client

__all__ = [
    "DEFAULT_URL", "ApiKeyOpt", "CliError", "DatasetOpt", "EmbeddingSetOpt", "FieldOpt",
    "OutputOpt", "UrlOpt", "choose_set", "open_client", "parse_fields",
]

DEFAULT_URL = "http://127.0.0.1:8000"

UrlOpt = Annotated[str, typer.Option(envvar="CHROMA_URL", help="API base URL.")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    "--api-key", envvar="CHROMA_API_KEY", show_default=False,
    help="API key sent as 'Authorization: Bearer <key>' (prefer the variable: a flag's "
         "value shows in the process list).")]
OutputOpt = Annotated[Format, typer.Option(
    "--output", "-o", help="table (fits the terminal), wide (more columns, full keys), "
                           "json or yaml.")]
EmbeddingSetOpt = Annotated[str | None, typer.Option(
    "--embedding-set", "-e", show_default=False,
    help="Embedding set key, or any unique prefix of it (4+ characters, as tables show).")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", "-d", show_default=False, help="The embedding set of this dataset.")]
FieldOpt = Annotated[list[str] | None, typer.Option(
    "--field", "-f", show_default=False,
    help="The embedding set whose fields include NAME=VALUE (repeatable, all must match; "
         "values compare as text: version=3 matches 3 and \"3\").")]

CLIENT_TIMEOUT_S = 30.0
CLIENT_RETRIES = 2
"""A person is waiting: one quick retry, then say the server is down."""


class CliError(Exception):
    """A command cannot go on; the message says what to fix (exit 1, or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@contextmanager
def open_client(url: str, api_key: str | None, *, progress: bool = False) -> Iterator[Client]:
    from chroma.client import Client

    with Client(url, api_key=api_key, timeout=CLIENT_TIMEOUT_S, retries=CLIENT_RETRIES,
                progress=progress) as client:
        yield client


def parse_fields(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--field {pair!r}: write NAME=VALUE, e.g. --field model=resnet50",
                           code=2)
        fields[name] = value
    return fields


def choose_set(client: Client, embedding_set: str | None, dataset: str | None,
               fields: list[str] | None, *, required: bool = True) -> str | None:
    """The key (or key prefix, which the server resolves) named by exactly one of
    ``--embedding-set``, ``--dataset`` or ``--field``; ``None`` if none and not required."""
    given = [name for name, value in (("--embedding-set", embedding_set),
                                      ("--dataset", dataset), ("--field", fields)) if value]
    if len(given) > 1:
        raise CliError(f"name the embedding set once: {' and '.join(given)} both given",
                       code=2)
    if embedding_set:
        return embedding_set
    if dataset:
        key = client.dataset(dataset)["embedding_set_key"]
        if key is None:
            raise CliError(f"dataset {dataset!r} has no records yet, so no embedding set")
        return str(key)
    if fields:
        return _key_by_fields(client, parse_fields(fields))
    if required:
        raise CliError("name the embedding set: --embedding-set KEY (a prefix will do), "
                       "--dataset NAME or --field NAME=VALUE (see: chroma get embeddingsets)",
                       code=2)
    return None


def _key_by_fields(client: Client, wanted: dict[str, str]) -> str:
    def matches(found: dict[str, Any]) -> bool:
        return all(name in found and _as_text(found[name]) == value
                   for name, value in wanted.items())

    keys = [s["key"] for s in client.embedding_sets() if matches(s["fields"])]
    said = " ".join(f"{k}={v}" for k, v in wanted.items())
    if not keys:
        raise CliError(f"no embedding set has {said} (see: chroma get embeddingsets)")
    if len(keys) > 1:
        raise CliError(f"{len(keys)} embedding sets have {said}: add --field to tell them "
                       f"apart (see: chroma get embeddingsets)")
    return str(keys[0])


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
