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

    max_json_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest body of every other request (``/query``, ``/records/delete``, ...): 413
    above, before it is read whole. These bodies are parsed into Python objects (several
    times their size), so the limit is below ``max_body_bytes``. Default 64 MiB."""

    max_dimension: int = Field(default=4096, ge=1, le=65_536)
    """Largest embedding dimension ``/log`` accepts (JSON and Arrow alike; 422 above).
    MHB keeps a d x d covariance per class, so the default stays at 4096."""

    max_records_per_request: int = Field(default=1_000_000, ge=1)
    """Largest batch one ``/log`` call may carry (413 above)."""

    group_commit_window_ms: float = Field(default=4.0, ge=0)
    """How long the committer waits for more concurrent requests before one durable commit.

    A few ms turns N single-record requests into one file + one transaction."""

    group_commit_max_records: int = Field(default=50_000, ge=1)
    """A group commit stops collecting once it holds this many records."""

    db_pool_max: int = Field(default=8, ge=1)
    """Connections in each process's PostgreSQL pool."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level written to the log (stderr)."""

    log_format: Literal["text", "json"] = "text"
    """``text``: ``time LEVEL logger [request id] message``, one line per event;
    ``json``: the same fields as one JSON object per line (for log collectors)."""

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
    """After a commit queues the implicit ``index`` and ``recommend`` operations, further
    commits of the same embedding set within this many seconds ask again once, at the end
    of the period (trailing edge): fewer catalog round trips, no change left uncovered."""

    freshness_check_s: float = Field(default=5.0, gt=0)
    """How often each API process compares every embedding set's change feed with what
    its index and labelling queue consumed, and queues the implicit operations where a
    change older than one check is missing with nothing queued or running (a trigger lost
    with a crashed process)."""

    operation_outage_giveup_s: float = Field(default=3600.0, ge=0)
    """How long an operation keeps waiting for an unreachable dependency (the query
    engine) before it fails. Meanwhile it is tried again with back-off (see
    ``operation_outage_retry_max_s``) without spending its attempts; ``/status`` shows it
    queued with "waiting for the query engine: <reason>; retry at <time>"."""

    operation_outage_retry_max_s: float = Field(default=30.0, ge=0)
    """The longest wait between two tries of an operation whose dependency is unreachable
    (1, 2, 4 ... seconds, capped here): how late a recovery may be noticed."""

    operation_lease_s: float = Field(default=15.0, gt=0)
    """How long a worker's claim on an operation lasts without a heartbeat. A worker that
    dies is noticed (and its operation retried) after at most this long."""

    worker_poll_s: float = Field(default=0.5, gt=0)
    """How often an idle worker looks for queued operations."""

    recommend_exact_knn_max: int = Field(default=1_000_000, ge=0)
    """Up to this many training records, ``recommend`` finds each production record's
    nearest training records in memory (exact, or approximate from
    ``recommend_approximate_knn_min`` on; see ``chroma.labelling.training``); above it,
    one search per record through the query engine (~730 records/s: a 1M refresh took
    over 20 minutes). Memory while a run lasts: the training vectors twice (as logged, and
    normalised in the inverted file's order) plus ~0.3 KiB per record for their ids and
    classes, ~1.3 GiB at 1M x 128. 0: always the index."""

    recommend_approximate_knn_min: int = Field(default=50_000, ge=0)
    """From this many training records on, the in-memory search for each production
    record's nearest training records is approximate (an inverted file,
    ``chroma.scoring.ivf``: recall@10 >= 0.95 on clustered data, ~50x less work than exact
    at 100k; ``bench/knn.py``); below it, exact. 0: always exact. What a 1M refresh
    against 100k training records needs to finish in about a minute."""

    recommend_training_cache_bytes: int = Field(default=256 * 2**20, ge=0)
    """A recommender keeps the last set's training vectors (and their normalised copy)
    between runs while their training data is unchanged, up to this size: an incremental
    ``recommend`` then reads only the new records. 0: read them every run."""

    mhb_max_dimension: int = Field(default=4096, ge=1)
    """Largest embedding dimension an MHB model is fitted for; above it ``fit-mhb`` and
    ``recommend`` fail with a message naming this limit. The tied and background
    covariances are dense d x d float64 (256 MiB together at 4096)."""

    mhb_max_classes: int = Field(default=2000, ge=1)
    """Most classes of one embedding set that get their own MHB Gaussian: the largest
    ones; records of the others count as unlabelled (they shape only the background
    Gaussian) and their predictions get no predicted-class distance. Bounds the scoring
    cost per record (O(classes x d))."""

    mhb_class_rank: int = Field(default=1024, ge=0)
    """Most eigen-directions of its own each class covariance keeps (tied + isotropic +
    low rank: memory O(classes x d x rank), never classes x d x d). A class with at most
    this many records, or of dimension at most this, is represented exactly; a deeper cut
    spreads the rest of its variance evenly and ranks worse. 0: the tied covariance plus
    an isotropic part per class. The model-size limit lowers it further when needed."""

    mhb_max_model_bytes: int = Field(default=512 * 2**20, ge=2**20)
    """Largest MHB model (float64 arrays; the artifact is that size). Class ranks are
    lowered until the model fits; a model that cannot fit even then (d^2 and classes x d
    terms) is refused. Default 512 MiB."""

    assessor_cache_bytes: int = Field(default=1024 * 2**20, ge=0)
    """Memory an API process may spend on the MHB models (with their scoring factors) and
    in-memory training vectors of the sets it assesses on ``/log``: least recently used
    sets are dropped first. A set that does not fit searches its neighbours through the
    query engine instead of memory; a model alone over it is not assessed (202). 0: no
    assessments. Default 1 GiB."""

    api_workers: int = Field(default=1, ge=1)
    """API processes ``chroma run`` starts (they are stateless; group commit is per process)."""

    worker_processes: Literal["shared", "separate"] = "shared"
    """``chroma run``'s workers (indexer, mhb, recommender, compactor): ``shared`` runs
    their loops as threads of one process (one resident copy of the libraries; a crash
    restarts all four), ``separate`` one process each (isolated; ~4x the memory)."""

    index_host: Literal["api", "workers"] = "workers"
    """``chroma run`` with the embedded (edge) index: which process runs the ``indexer``
    loop and so hosts the index. ``api``: a thread of the API process, whose searches
    and fresh upserts then reach the engine in-process (no socket hop); the other
    workers read through the API's socket. ``workers``: the workers process, which the
    API reads over a unix socket. With ``api_workers > 1`` the workers host it anyway
    (only one process can). ``chroma serve``/``chroma worker`` are not affected."""

    index_quantization: Literal["none", "int8"] = "none"
    """The embedded (edge) index: ``int8`` builds new index versions with int8 scalar
    quantization (searches walk the graph on 1-byte codes and rescore on the originals;
    ``chroma.index.IndexConfig.quantization``): ~20% less search CPU at a lower
    recall. Versions built before keep what they were built with."""

    memory_release_check_s: float = Field(default=5.0, ge=0)
    """How often the API and worker processes check whether a busy spell has ended, to
    give the memory it freed back to the system then (``chroma.memory.
    start_idle_release``; a few ms, never during a burst), when no end of work was
    noted (see ``memory_release_settle_s``). 0: only the worker's release after each
    operation."""

    memory_release_settle_s: float = Field(default=1.0, gt=0)
    """When the API's last request in flight or a worker's operation ends, the process
    looks this long after whether it has gone quiet, and then gives back what the burst
    freed (a bulk ingest's ~70 MiB of heap in the API after 100k x 128) and closes its
    surplus catalog connections, instead of waiting for the next regular check."""

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
    from the catalog and the store; below it, it builds the graph over the new points
    only (in embedded mode by a child, on a copy of the live version that then replaces
    it). Neither stalls searches or fresh writes. Default 0.3."""

    index_host_wait_s: float = Field(default=10.0, ge=0)
    """Embedded mode: how long a search waits for the index host (the indexer worker) to
    come up after asking it to start, before answering 503. Default 10 s covers a worker
    restart with backoff."""
