"""Bounded types shared by every path, query and body parameter of the API.

PostgreSQL refuses the NUL character in ``text`` and integers beyond ``bigint``; a
parameter that reaches it unbounded answered 500. Every text parameter is therefore
NUL-free and of bounded length, every integer within what its column holds, so such
input is a 422 naming the parameter, documented in the contract.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field, StringConstraints

from chroma.ingest.models import DATASET_NAME_PATTERN
from chroma.ingest.validation import MAX_TEXT, NO_NUL_PATTERN

__all__ = [
    "BIGINT_MAX",
    "DatasetNamePath",
    "DatasetNameText",
    "EmbeddingSetKeyQuery",
    "EmbeddingSetKeyText",
    "LimitQuery",
    "NameCursorQuery",
    "OperationIdPath",
    "RecordIdPath",
    "RecordIdText",
    "ShortText",
    "TagText",
    "TextQuery",
]

BIGINT_MAX = 2**63 - 1
"""Largest PostgreSQL ``bigint`` (operation ids)."""

ShortText = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)]
"""A class, tag or other short text: at most 256 characters, no NUL."""

RecordIdText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)
]
"""A record id as ``/log`` accepts it."""

TagText = RecordIdText
"""A tag as ``/log`` accepts it: 1 to 256 characters, no NUL."""

DatasetNameText = Annotated[str, Field(pattern=DATASET_NAME_PATTERN)]
"""A dataset name as ``/log`` accepts it."""

EmbeddingSetKeyText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)
]
"""An embedding-set key (SHA-1 hex of its fields; looser here so a wrong key is a 404)."""

DatasetNamePath = Annotated[str, Path(pattern=DATASET_NAME_PATTERN,
                                      description="The dataset's name.")]
RecordIdPath = Annotated[str, Path(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN,
                                   description="The record's id.")]
OperationIdPath = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The operation's id.")]
EmbeddingSetKeyQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN,
          description="Only this embedding set: its key or a unique prefix of it (at least "
                      "4 characters)."),
]
NameCursorQuery = Annotated[
    str | None,
    Query(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN,
          description="`next_cursor` of the previous page (DESIGN §13)."),
]
"""The cursor of a list in name or key order: the last name or key of the previous page."""
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="At most this many per page.")]
TextQuery = Annotated[
    str | None, Query(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN),
]
