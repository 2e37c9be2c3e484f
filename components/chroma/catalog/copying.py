"""``COPY … FROM STDIN`` of many rows, encoded by Arrow as CSV rather than row by row.

psycopg's ``Copy.write_row`` and its array dumpers run in Python per value: for the
record index and the labelling queue (tens of thousands of rows per commit or page)
they cost more than PostgreSQL's own work. Arrow writes the same CSV in C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["copy_csv", "pg_text_array"]

def pg_text_array(values: Sequence[str]) -> str:
    """A PostgreSQL ``text[]`` literal: every element quoted, ``\\`` and ``"`` escaped."""
    if not values:
        return "{}"
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def copy_csv(cur: psycopg.Cursor[Any], table: str, rows: pa.Table) -> None:
    """COPY ``rows`` into ``table`` as CSV encoded by Arrow, not row by row in Python.

    Arrow's CSV is PostgreSQL's: strings are always quoted (so ``""`` is the empty
    string) and a null is an empty unquoted field, which COPY reads as NULL.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    sink = pa.BufferOutputStream()
    pa_csv.write_csv(rows, sink, pa_csv.WriteOptions(include_header=False,
                                                   quoting_style="needed"))
    columns = ", ".join(rows.column_names)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(memoryview(sink.getvalue()))
