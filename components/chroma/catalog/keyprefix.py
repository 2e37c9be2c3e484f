"""Which embedding set a key prefix names: the pure choice, given the keys that start with
it (:meth:`chroma.catalog.Catalog.resolve_key` looks those up).

Keys are 40 hex characters; people copy the 12 that tables show. Like git, any prefix of
at least :data:`MIN_KEY_PREFIX` characters that names exactly one set stands for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from chroma.errors import InvalidInput, NotFound

__all__ = ["MIN_KEY_PREFIX", "check_key_prefix", "pick_key"]

MIN_KEY_PREFIX = 4
"""Shortest prefix of an embedding-set key accepted in its place (git's minimum too)."""


def check_key_prefix(prefix: str) -> None:
    """Refuse a prefix too short to name a key (422), before anything is looked up."""
    if len(prefix) < MIN_KEY_PREFIX:
        raise InvalidInput(f"embedding set key {prefix!r} is too short: give at least "
                           f"{MIN_KEY_PREFIX} characters of it (see GET /api/v1/embeddingsets)")


def pick_key(prefix: str, matches: Sequence[str], total: int) -> str:
    """The one key ``prefix`` names, given the keys starting with it (``matches``, maybe
    only the first few, in key order) and how many there are in all (``total``).

    An exact key wins even when it is also the prefix of a longer one. None: 404; more
    than one: 422 saying how many, so the caller adds characters (as git does).
    """
    check_key_prefix(prefix)
    if prefix in matches:
        return prefix
    if total == 0 or not matches:
        raise NotFound(f"no embedding set {prefix}")
    if total > 1:
        shown = ", ".join(m[:12] for m in matches[:3])
        more = ", ..." if total > 3 else ""
        raise InvalidInput(f"embedding set key prefix {prefix!r} is ambiguous: {total} sets "
                           f"start with it ({shown}{more}); give more characters")
    return matches[0]
