"""Configuration of every Chroma process, from environment variables (prefix ``CHROMA_``).

The mode (embedded or cluster) is configuration, never a code fork: an unset
``database_url`` means "start our own PostgreSQL under the data directory"; a
``storage_url`` starting with ``s3://`` means parquet in S3 through s3fs.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """All settings; each field documents its meaning, default and why."""

    model_config = SettingsConfigDict(env_prefix="CHROMA_", extra="ignore", frozen=True)

    mode: Literal["embedded", "cluster"] = "embedded"
    """``embedded`` (one machine, ``chroma run``) or ``cluster`` (operator-managed)."""

    data_dir: Path = Path("./chroma-data")
    """Root of everything embedded mode keeps on disk (store, PostgreSQL, index)."""

    host: str = "127.0.0.1"
    """Address the API binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port the API binds to."""

    database_url: SecretStr | None = None
    """PostgreSQL DSN. Unset: ``chroma run`` starts its own server under ``data_dir/postgres``."""

    storage_url: str | None = None
    """Where parquet files go: a local path or ``s3://bucket/prefix`` (default data_dir/store)."""

    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, moto, ...); unset means AWS. Credentials: AWS_* vars."""

    s3_region: str | None = None
    """S3 region, when the endpoint needs one."""

    max_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    """Largest request body accepted (413 above). Default 256 MiB, enough for ~500k x 128 Arrow."""

    max_records_per_request: int = Field(default=1_000_000, ge=1)
    """Largest batch one ``/log`` call may carry (413 above)."""

    group_commit_window_ms: float = Field(default=4.0, ge=0)
    """How long the committer waits for more concurrent requests before one durable commit.

    A few ms turns N single-record requests into one file + one transaction."""

    group_commit_max_records: int = Field(default=50_000, ge=1)
    """A group commit stops collecting once it holds this many records."""

    db_pool_max: int = Field(default=8, ge=1)
    """Connections in each process's PostgreSQL pool."""

    index_backend: Literal["edge", "remote"] = "edge"
    """Vector index: ``edge`` (Qdrant engine in-process, embedded) or ``remote`` (Qdrant server)."""

    qdrant_url: str | None = None
    """Qdrant server URL for the ``remote`` backend."""

    qdrant_api_key: SecretStr | None = None
    """API key of the Qdrant server (``remote`` backend), sent with every request; unset for
    an open server. In a cluster the operator generates one. Never logged (``SecretStr``)."""

    api_keys_file: Path | None = None
    """File of API keys, one ``<scope> <key>`` per line (scope ``read``, ``write`` or
    ``admin``; ``#`` starts a comment): what a Kubernetes Secret mounts. Re-read when it
    changes (checked at most once a second), no restart needed. Set (even to an empty
    file): every route but ``/health`` and ``/ready`` needs a key. See ``chroma.api.auth``."""

    api_keys: SecretStr | None = None
    """API keys inline, the same ``<scope> <key>`` lines separated by newlines or commas;
    added to ``api_keys_file``'s. Keys are at least 32 characters (``chroma keys new``).
    Unset with no file: no keys, allowed only on a loopback ``host`` (or ``insecure``)."""

    metrics_public: bool = False
    """``true``: ``GET /metrics`` answers without a key (for a scraper inside a trusted
    network). Default: it needs a ``read`` key once keys are configured."""

    insecure: bool = False
    """``true`` (or ``--insecure``): accept binding a non-loopback ``host`` with no API
    keys, leaving every route open to whoever can reach it. Default refuses to start."""

    index_trigger_debounce_s: float = Field(default=1.0, ge=0)
    """After a commit queues an ``index`` operation, further commits of the same embedding
    set within this many seconds do not ask again (the queue coalesces anyway)."""

    operation_lease_s: float = Field(default=15.0, gt=0)
    """How long a worker's claim on an operation lasts without a heartbeat. A worker that
    dies is noticed (and its operation retried) after at most this long."""

    worker_poll_s: float = Field(default=0.5, gt=0)
    """How often an idle worker looks for queued operations."""

    recommend_exact_knn_max: int = Field(default=100_000, ge=0)
    """Up to this many training records, ``recommend`` finds each production record's
    nearest training records exactly, in memory (faster than the index there; see
    ``chroma.labelling.training``); above it, through the query engine. 0: always the index."""

    api_workers: int = Field(default=1, ge=1)
    """API processes ``chroma run`` starts (they are stateless; group commit is per process)."""

    @field_validator("storage_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @cached_property
    def resolved_storage_url(self) -> str:
        """The store root: ``storage_url`` or ``data_dir/store`` made absolute."""
        if self.storage_url:
            return self.storage_url
        return str((self.data_dir / "store").resolve())

    @property
    def postgres_dir(self) -> Path:
        """Where embedded mode keeps its PostgreSQL cluster."""
        return (self.data_dir / "postgres").resolve()

    operation_launcher: Literal["queue", "indexjob"] = "queue"
    """What starts a newly queued operation besides the queue: ``queue`` (default: the
    workers pull it) or ``indexjob`` (cluster mode: also submit an ``IndexJob`` custom
    resource with the pod's ServiceAccount; the operator sets this). See
    ``chroma.operations.launchers``."""

    cluster_name: str | None = None
    """Name of the ChromaCluster this process belongs to (cluster mode; set by the
    operator). Required by the ``indexjob`` launcher: IndexJobs name their cluster."""

    namespace: str | None = None
    """Kubernetes namespace of the ChromaCluster (set by the operator). Unset: the pod's
    ServiceAccount namespace."""

    index_dir: Path | None = None
    """Embedded (``edge``) index: the directory of one sub-directory per embedding set.
    Unset: ``data_dir/index``. Also holds the index host's lock and (when the path is
    short enough for a unix socket) its socket."""

    index_exact_scan_max: int = Field(default=20_000, ge=0)
    """Points an incremental ``index`` operation may leave outside the HNSW graph; they are
    searched exactly (a scan of 20k x 128 costs a few ms). Above it the operation builds
    the graph: see ``index_rebuild_ratio``. Default 20k keeps single-record production traffic from
    rebuilding anything while bounding the exact-scan cost per query."""

    index_rebuild_ratio: float = Field(default=0.3, gt=0, le=1)
    """When more than ``index_exact_scan_max`` points are unindexed and they are at least
    this fraction of the collection, the ``index`` operation rebuilds the whole version
    (graph built in a child process: searches are not stalled); below it, it optimizes in
    place (graph over the new points only; in embedded mode this holds the indexer's GIL,
    stalling searches for about 1 s per 10k new 128-d points on 2 cores). Default 0.3."""

    index_host_wait_s: float = Field(default=10.0, ge=0)
    """Embedded mode: how long a search waits for the index host (the indexer worker) to
    come up after asking it to start, before answering 503. Default 10 s covers a worker
    restart with backoff."""
