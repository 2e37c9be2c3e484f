"""Which embedding set a key prefix names (``chroma.catalog.keyprefix``): pure logic; the
HTTP side is tests/integration/test_api_conventions.py."""

from __future__ import annotations

import pytest

from chroma.catalog.keyprefix import MIN_KEY_PREFIX, pick_key
from chroma.errors import InvalidInput, NotFound

A = "27bbbcc3b30a" + "0" * 28
B = "27bbbcc3b30a" + "1" * 28
C = "27bb" + "f" * 36


def test_a_unique_prefix_names_its_key() -> None:
    assert pick_key("27bbbcc3b30a", [A], 1) == A
    assert pick_key("27bb", [A], 1) == A


def test_a_full_key_wins_even_when_it_prefixes_another() -> None:
    assert pick_key("abcd", ["abcd", "abcdef"], 2) == "abcd"
    assert pick_key(A, [A], 1) == A


def test_no_match_is_not_found() -> None:
    with pytest.raises(NotFound, match="no embedding set 0000"):
        pick_key("0000", [], 0)


def test_several_matches_are_refused_saying_how_many() -> None:
    with pytest.raises(InvalidInput, match="ambiguous: 2 sets") as refused:
        pick_key("27bbbcc3b30a", [A, B], 2)
    assert "27bbbcc3b30a" in refused.value.message
    with pytest.raises(InvalidInput, match=r"ambiguous: 7 sets .*\.\.\.\); give more"):
        pick_key("27bb", [A, B, C], 7)


@pytest.mark.parametrize("prefix", ["", "2", "27b"])
def test_a_prefix_shorter_than_the_minimum_is_refused_before_any_lookup(prefix: str) -> None:
    assert len(prefix) < MIN_KEY_PREFIX
    with pytest.raises(InvalidInput, match=f"at least {MIN_KEY_PREFIX} characters"):
        pick_key(prefix, [A], 1)
