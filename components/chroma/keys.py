"""Stable identifiers: the embedding-set key and deterministic point ids.

Pure functions, no I/O. Any process can compute them without a lookup.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "embedding_set_key", "point_id"]

# Namespace for point ids; fixed forever so that re-indexing is idempotent.
_POINT_NAMESPACE = uuid.UUID("6c1f3b1e-8d2a-4f5e-9a47-0c3e2b7d9f10")


def canonical_json(fields: Mapping[str, Any]) -> str:
    """The canonical JSON of an embedding set's fields (DESIGN §3)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def embedding_set_key(fields: Mapping[str, Any]) -> str:
    """SHA-1 hex of the canonical JSON of ``fields`` (UTF-8)."""
    return hashlib.sha1(canonical_json(fields).encode("utf-8")).hexdigest()


_NAMESPACE_BYTES = _POINT_NAMESPACE.bytes


def point_id(dataset: str, record_id: str) -> str:
    """Deterministic UUID for a record in the vector index, from (dataset, record id):
    ``str(uuid.uuid5(_POINT_NAMESPACE, f"{dataset}\\x1f{record_id}"))``, computed without
    the ``UUID`` object (1.7 instead of 4.4 us; every point of an index fill needs one)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{dataset}\x1f{record_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
