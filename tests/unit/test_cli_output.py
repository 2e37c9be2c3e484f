"""The CLI's plain tables (``chroma.cli.output``) and its argument handling: fitted to a
width, cut with an ellipsis, one line per row; ``-v`` anywhere on the line."""

from __future__ import annotations

import pytest

from chroma.cli.main import _verbosity_first
from chroma.cli.output import SHORT_KEY, render_table, short_key

HEADERS = ["id", "kind", "embedding set", "message"]
ROWS = [["1", "index", "a" * 40, "indexed 3 embedding sets in 2.1 s " * 3],
        ["2", "recommend", "b" * 40, "-"]]


@pytest.mark.parametrize("width", [80, 60, 40])
def test_a_table_fits_the_width_it_is_given(width: int) -> None:
    text = render_table(HEADERS, ROWS, width)
    lines = text.splitlines()
    assert len(lines) == 3  # header + one line per row, never wrapped
    assert max(len(line) for line in lines) <= width
    assert lines[0].split() == ["ID", "KIND", "EMBEDDING", "SET", "MESSAGE"]
    assert "…" in lines[1]  # the long cells were cut, visibly
    assert lines[2].split()[:2] == ["2", "recommend"]  # short cells are kept whole


def test_without_a_width_nothing_is_cut() -> None:
    text = render_table(HEADERS, ROWS, None)
    assert "a" * 40 in text and "…" not in text


def test_columns_line_up() -> None:
    lines = render_table(["name", "n"], [["x", "1"], ["longer-name", "22"]], 80).splitlines()
    start = len("longer-name") + 2  # the widest cell, then two spaces
    assert [line[start:] for line in lines] == ["N", "1", "22"]
    assert all(line[:start].rstrip() == line.split()[0] for line in lines)


def test_keys_are_short_unless_wide() -> None:
    key = "0123456789abcdef" * 2 + "01234567"
    assert short_key(key) == key[:SHORT_KEY]
    assert short_key(key, wide=True) == key
    assert short_key(None) == "all"


@pytest.mark.parametrize(("argv", "expected", "verbosity"), [
    (["status", "-v"], ["-v", "status"], 1),
    (["op", "list", "--verbose", "--limit", "3"], ["--verbose", "op", "list", "--limit", "3"],
     1),
    (["-vv", "status"], ["-vv", "status"], 2),
    (["op", "run", "sleep", "--", "-v"], ["op", "run", "sleep", "--", "-v"], 0),
])
def test_verbosity_may_stand_anywhere(argv: list[str], expected: list[str],
                                      verbosity: int) -> None:
    assert _verbosity_first(argv) == (expected, verbosity)
