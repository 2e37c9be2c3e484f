"""What the CLI prints, kubectl's way: a plain table that fits the terminal, or the
objects as ``-o json`` / ``-o yaml``, or ``-o wide`` (more columns, full keys, no
cutting).

Tables have no colour and no borders, so they read the same in a terminal, a pipe or a
log, and ``grep``/``awk`` work on them. The width is the terminal's (``COLUMNS`` first,
80 when there is none, as in a pipe); a default table that would be wider has its widest
cells cut with ``…``. Keys show as their first :data:`SHORT_KEY` characters, which every
command accepts back (any unique prefix of 4 or more names a set); ``-o wide``, json and
yaml print them whole.
"""

from __future__ import annotations

import enum
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["SHORT_KEY", "Column", "Format", "ago", "emit", "key_column", "print_document",
           "render_table", "short_key", "terminal_width"]

SHORT_KEY = 12
"""Characters of an embedding-set key a default table shows (git's short ids are 7-12)."""
GAP = "  "
MIN_CUT = 6
"""A cut column keeps at least this many characters (with its ``…``)."""


class Format(enum.StrEnum):
    """``-o``: table (default), wide, json or yaml."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


@dataclass(frozen=True)
class Column:
    """One column: its header and how to read the cell from an object (``wide_cell``:
    another reading for ``-o wide``, e.g. the whole key)."""

    header: str
    cell: Callable[[dict[str, Any]], object]
    wide_only: bool = False
    wide_cell: Callable[[dict[str, Any]], object] | None = None

    def read(self, obj: dict[str, Any], wide: bool) -> object:
        return (self.wide_cell if wide and self.wide_cell else self.cell)(obj)


def key_column(header: str, field: str) -> Column:
    """An embedding-set key: short in a table, whole with ``-o wide``."""
    return Column(header, lambda o: short_key(o[field]), wide_cell=lambda o: short_key(
        o[field], wide=True))


def terminal_width() -> int:
    """``COLUMNS``, else the terminal's width, else 80 (e.g. when piped)."""
    return shutil.get_terminal_size((80, 24)).columns


def short_key(key: str | None, wide: bool = False) -> str:
    if key is None:
        return "all"
    return key if wide else key[:SHORT_KEY]


def ago(seconds: float | None) -> str:
    """A duration as kubectl's AGE column writes it: 42s, 7m, 3.5h."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 width: int | None = None) -> str:
    """Rows under upper-case headers, columns two spaces apart; with ``width``, the
    widest cells are cut (``…``) until every line fits."""
    headers = [h.upper() for h in headers]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    if width is not None:
        widths = _fit(widths, [len(h) for h in headers], width)
    lines = []
    for row in [headers, *rows]:
        cells = [_cut(cell, w) for cell, w in zip(row, widths, strict=True)]
        lines.append(GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _fit(widths: list[int], floors: list[int], width: int) -> list[int]:
    """Narrow the widest columns, one character at a time, until the line fits."""
    widths = list(widths)
    floors = [max(min(f, w), min(MIN_CUT, w)) for f, w in zip(floors, widths, strict=True)]
    while sum(widths) + len(GAP) * (len(widths) - 1) > width:
        cuttable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not cuttable:
            break  # as narrow as it gets; a terminal this small wraps
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[:width - 1] + "…"


def emit(objects: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: Format,
         *, document: Any = None) -> None:
    """Print ``objects`` as a table of ``columns``, or ``document`` (default: the list
    of objects) as json or yaml."""
    if fmt in (Format.json, Format.yaml):
        print_document(objects if document is None else document, fmt)
        return
    wide = fmt is Format.wide
    shown = [c for c in columns if wide or not c.wide_only]
    rows = [[_text(c.read(o, wide)) for c in shown] for o in objects]
    print(render_table([c.header for c in shown], rows,
                       None if wide else terminal_width()))


def print_document(document: Any, fmt: Format) -> None:
    if fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
