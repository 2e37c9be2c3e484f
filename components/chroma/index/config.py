"""``IndexConfig``: which query-engine backend to open and how to tune its HNSW index.

Plain frozen data; ``open_query_engine`` reads it. The settings layer (env vars or a file)
builds one; tests and the benchmark build one directly. Every field says its meaning, its
default and why that default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chroma.errors import InvalidInput

__all__ = ["Backend", "IndexConfig", "Quantization"]

Backend = Literal["edge", "remote"]
Quantization = Literal["none", "int8"]


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How to reach the vector index and how to build it."""

    backend: Backend = "edge"
    """``"edge"``: Qdrant Edge in-process, shards on disk under ``path`` (embedded mode).
    ``"remote"``: a Qdrant server at ``url`` through qdrant-client (cluster mode).
    Default ``"edge"`` because the embedded mode is the default way to run Chroma."""

    path: Path | None = None
    """Edge: the directory holding one sub-directory per embedding set (required).
    Remote without ``url``: a qdrant-client *local mode* directory, a test stand-in for a
    server (brute force, slow past ~20k points). Default ``None``."""

    url: str | None = None
    """Remote: the Qdrant server, e.g. ``http://qdrant:6333``; ``":memory:"`` selects
    qdrant-client's in-memory local mode (tests only). Default ``None``."""

    api_key: str | None = field(default=None, repr=False)
    """Remote: Qdrant API key sent with every request; ``None`` for an open server.
    Left out of ``repr`` so a logged config never shows it."""

    timeout_s: float = 30.0
    """Remote: per-request timeout in seconds. 30 s covers a large batched upsert on a
    busy server; a hung server surfaces as ``Unavailable`` instead of a stuck worker."""

    optimize_timeout_s: float = 900.0
    """Remote: longest ``optimize`` or ``reindex`` waits for the server to finish indexing a
    collection (status green); then ``Unavailable`` naming the status, never a hang. The
    points stay searchable meanwhile (unindexed ones exactly). 900 s: a 100k x 128 graph
    builds in ~18 s on 2 cores, so this covers a few million points on a small server."""

    collection_prefix: str = "chroma_"
    """Remote: prefix of every alias and collection Chroma creates, so a shared server can
    tell Chroma's collections apart. Default ``"chroma_"``."""

    hnsw_m: int = 16
    """HNSW graph degree (edges per node). 16 is Qdrant's default and, with the values
    below, gives recall@10 >= 0.99 on clustered 128-d data at 100k (tests/bench). Higher
    means better recall, more memory and slower builds."""

    hnsw_ef_construct: int = 100
    """HNSW build-time candidate list. 100 is Qdrant's default; 64 builds ~40% faster at
    ~0.5 point lower recall (measured in bench/query.py). Allowed: >= 4."""

    hnsw_ef_search: int = 128
    """HNSW query-time candidate list (must be >= k to matter) for a graph of up to 100k
    points: recall@10 0.998 at 100k x 128. Qdrant Edge grows it with the graph's size
    (``base.scaled_ef``: 256 at 1M, recall@10 0.961 where a fixed 128 gave 0.910); the
    remote backend sends it as it is (a server's size is not known per search)."""

    full_scan_threshold_kb: int = 10_000
    """Below this many kilobytes of vectors a (filtered) search scans exactly instead of
    walking the graph; Qdrant's default. Strict filters then stay exact and fast."""

    filter_graph: bool = False
    """Build Qdrant's extra per-value HNSW links for the payload fields Chroma filters on.
    Off by default: every point belongs to one split and one dataset, so each value
    grows a graph of its own, and a 100k x 128 build took 36 s instead of ~18 s on 2
    cores. Without it a filtered search walks the main graph checking the filter, and a
    filter that admits fewer than ``full_scan_threshold_kb`` of vectors is answered
    exactly from the payload index. Turn on for many small, frequently filtered datasets."""

    edge_segment_number: int = 8
    """Edge: how many segments a shard may keep before its optimizer merges them. With 8,
    ``optimize`` after an incremental upsert builds a graph for the new points only
    (measured: +20k into 100k x 128 in 2.2 s) instead of merging and re-linking the whole
    shard (14 s with Qdrant's automatic choice on 2 cores); searches visit a few more
    segments in exchange. A full re-index still yields one large segment per ~size cap."""

    edge_search_threads: int | None = None
    """Edge: threads of each open shard's search pool (Qdrant Edge searches a shard's
    segments on it). ``None``: half the CPUs this process may run on, at least one (the
    index host shares the machine with the API and its clients). Edge's own default was
    8 threads on a 2-core machine: each single search woke all 8, which spun before
    sleeping again, 540 us of CPU per search beside the ~230 us of the search itself.
    On 2 cores one thread beat two in both pairs of ``bench/peers.py --rounds 2 --peers
    --no-refresh`` (single p50 2.17 / 1.94 ms against 2.39 / 2.12, batched 2,564 / 2,769
    against 2,448 / 2,429 vec/s, load 2.4-3)."""

    quantization: Quantization = "none"
    """Edge: ``"int8"`` keeps a scalar-quantized (1 byte a dimension) copy of each graph
    segment's vectors in RAM; the graph is walked on it and the best
    ``quantization_oversampling`` x k candidates are rescored on the original vectors.
    ``"none"``: the graph is walked on the float32 vectors. Applies to versions built
    after it is set (a version keeps the setting it was built with). Default ``"none"``:
    int8 did not keep recall@10 at 0.998 (100k x 128 of ``bench/peers.py``'s data,
    ``bench/quantization.py``, two builds each, in turns: float32 at ef 128 0.997-0.998
    for 23-26 ms CPU per 100 vectors; int8 with oversampling 4 at ef 128 0.995 for
    19-20 ms, at ef 192 0.997 for 22-23 ms, never above 0.9972 in four builds; its graph
    is built on the codes, so a float32 walk of it is worse too). ``"int8"`` trades
    those points of recall for ~20% less search CPU (``CHROMA_INDEX_QUANTIZATION``); the
    codes add 1 byte a dimension in RAM; build times were within the noise."""

    quantization_oversampling: float = 4.0
    """Edge, with ``quantization="int8"``: candidates rescored on the original vectors per
    requested hit (1.0 to 16.0). 4: recall@10 0.994-0.996 at ef 128 where 1 gave 0.80
    (int8's error is large next to the gaps between near neighbours of clustered data),
    2 0.97, 10 0.996-0.997 at about the same CPU."""

    upsert_batch_size: int = 1_000
    """Points per update request. 1000 x 128 floats is ~0.5 MB per request, well under
    the server's request limit, and large enough to amortise per-request overhead."""

    def __post_init__(self) -> None:
        if self.backend not in ("edge", "remote"):
            raise InvalidInput(f"index backend must be 'edge' or 'remote', not {self.backend!r}")
        if self.backend == "edge" and self.path is None:
            raise InvalidInput("the edge index backend needs a path (its data directory)")
        if self.backend == "remote" and self.url is None and self.path is None:
            raise InvalidInput("the remote index backend needs a url (or a local-mode path)")
        if self.hnsw_m < 2 or self.hnsw_ef_construct < 4 or self.hnsw_ef_search < 1:
            raise InvalidInput("HNSW parameters must be m >= 2, ef_construct >= 4, ef_search >= 1")
        if self.edge_segment_number < 1:
            raise InvalidInput("edge_segment_number must be >= 1")
        if self.edge_search_threads is not None and self.edge_search_threads < 1:
            raise InvalidInput("edge_search_threads must be >= 1 (or None: half the CPUs)")
        if self.timeout_s <= 0 or self.optimize_timeout_s < 0:
            raise InvalidInput("timeout_s must be > 0 and optimize_timeout_s >= 0")
        if self.quantization not in ("none", "int8"):
            raise InvalidInput(
                f"quantization must be 'none' or 'int8', not {self.quantization!r}")
        if not 1.0 <= self.quantization_oversampling <= 16.0:
            raise InvalidInput("quantization_oversampling must be in 1.0..16.0")
        if self.upsert_batch_size < 1:
            raise InvalidInput("upsert_batch_size must be >= 1")
