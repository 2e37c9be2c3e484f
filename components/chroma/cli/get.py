"""``chroma get embeddingsets|datasets|operations``: kubectl's ``get`` for what the API
lists, every page of it (``next_cursor`` followed), as a table, wide, json or yaml."""

from __future__ import annotations

from typing import Annotated

import typer

from chroma.cli.common import (
    DEFAULT_URL,
    ApiKeyOpt,
    DatasetOpt,
    EmbeddingSetOpt,
    FieldOpt,
    OutputOpt,
    UrlOpt,
    choose_set,
    open_client,
)
from chroma.cli.ops import op_list
from chroma.cli.output import Column, Format, emit, key_column

__all__ = ["get_app"]

get_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                      help="List embedding sets, datasets or operations.")

EMBEDDING_SET_COLUMNS = [
    key_column("key", "key"),
    Column("fields", lambda s: s["fields"]),
    Column("dim", lambda s: s["dimension"]),
    Column("training", lambda s: s["counts"].get("training", 0)),
    Column("production", lambda s: s["counts"].get("production", 0)),
    Column("distance", lambda s: s["distance"], wide_only=True),
    Column("last log", lambda s: s["last_log"], wide_only=True),
]
DATASET_COLUMNS = [
    Column("name", lambda d: d["name"]),
    Column("split", lambda d: d["split"]),
    key_column("embedding set", "embedding_set_key"),
    Column("records", lambda d: d["record_count"]),
    Column("retention", lambda d: f"{d['retention_days']}d" if d["retention_days"] else "-",
           wide_only=True),
    Column("last log", lambda d: d["last_log"], wide_only=True),
]


@get_app.command("embeddingsets")
def get_embedding_sets(url: UrlOpt = DEFAULT_URL, api_key: ApiKeyOpt = None,
                       output: OutputOpt = Format.table) -> None:
    """Embedding sets: key (short; full with -o wide), fields, dimension, record counts."""
    with open_client(url, api_key) as client:
        sets = client.embedding_sets()
    emit(sets, EMBEDDING_SET_COLUMNS, output)


@get_app.command("datasets")
def get_datasets(
    embedding_set: EmbeddingSetOpt = None,
    dataset: DatasetOpt = None,
    field: FieldOpt = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Datasets (of one embedding set, if named): split, embedding set, record count."""
    with open_client(url, api_key) as client:
        key = choose_set(client, embedding_set, dataset, field, required=False)
        datasets = client.datasets(embedding_set_key=key)
    emit(datasets, DATASET_COLUMNS, output)


@get_app.command("operations")
def get_operations(
    state: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Recent operations, newest first (as ``chroma op list``)."""
    op_list(state=state, kind=kind, embedding_set=None, dataset=None, field=None, limit=limit,
            url=url, api_key=api_key, output=output)
