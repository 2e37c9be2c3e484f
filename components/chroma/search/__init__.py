"""Search: the k nearest live records of query vectors or of a stored record.

Owns the query path between the HTTP layer and the engine: checking query vectors
against the set's dimension, reading a stored record's vector, asking the index reader
for a few more hits than asked (``OVERFETCH``) and keeping only records the catalog
still holds, with their current classes and tags. Reusable by the API, the CLI and
in-process callers alike.

Must not touch: HTTP models (``chroma.api`` converts), SQL (``catalog.live``), the index
engine's internals (``chroma.index.hosting.open_reader`` hides the mode).
"""

from chroma.search.neighbours import (
    OVERFETCH,
    Found,
    Hit,
    IndexNotBuilt,
    check_queries,
    find,
    live_hits,
    record_vector,
    search_live,
)

__all__ = [
    "OVERFETCH", "Found", "Hit", "IndexNotBuilt", "check_queries", "find", "live_hits",
    "record_vector", "search_live",
]
