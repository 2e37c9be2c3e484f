"""Typed views of the custom resources' specs, with the CRD defaults applied.

Owns: parsing a ``spec`` dict (as stored by the API server, or as written by hand in a
unit test) into frozen dataclasses. The API server already applies the CRD defaults; the
same defaults are repeated here so builders are total functions of their input, and a
unit test checks that both agree with ``crds/``. Called by the builders in this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chroma_operator import constants as c

Resources = dict[str, Any]


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


@dataclass(frozen=True)
class IngressSpec:
    enabled: bool = False
    """Create an Ingress for the API Service. Default false."""
    host: str | None = None
    """Host name routed to the API; none routes every host."""
    class_name: str | None = None
    """``ingressClassName``; none uses the cluster default."""
    path: str = "/"
    """Path prefix routed to the API. Default ``/``."""
    tls_secret_name: str | None = None
    """Secret holding the TLS certificate for ``host``; none serves plain HTTP."""


@dataclass(frozen=True)
class ApiSpec:
    replicas: int = 2
    """API pods (``chroma serve``). Default 2, minimum 0."""
    resources: Resources = field(default_factory=dict)
    """Container resources (requests/limits)."""
    service_type: str = "ClusterIP"
    """Service type of the API: ClusterIP, NodePort or LoadBalancer."""
    ingress: IngressSpec = field(default_factory=IngressSpec)


@dataclass(frozen=True)
class WorkersSpec:
    replicas: int = 1
    """Worker pods (``chroma worker``: recommender and queued operations). Default 1."""
    resources: Resources = field(default_factory=dict)


@dataclass(frozen=True)
class QdrantSpec:
    mode: str = "Managed"
    """``Managed`` (StatefulSet made by the operator) or ``External`` (``url``)."""
    url: str | None = None
    """Qdrant URL when ``mode`` is External."""
    image: str = c.DEFAULT_QDRANT_IMAGE
    replicas: int = 1
    storage_size: str = "10Gi"
    """Size of each Qdrant PVC. Default 10Gi."""
    storage_class_name: str | None = None
    resources: Resources = field(default_factory=dict)
    api_key_secret: str | None = None
    """Secret holding the Qdrant API key (``apiKeySecret.name``). None: a Managed Qdrant
    gets a generated ``<cluster>-qdrant-api-key``; an External one is called without a key."""
    api_key_key: str = c.QDRANT_API_KEY_KEY
    """Key of the API key inside that Secret. Default ``api-key``."""

    @property
    def managed(self) -> bool:
        return self.mode == "Managed"


@dataclass(frozen=True)
class StorageSpec:
    url: str = ""
    """Where parquet data lives, e.g. ``s3://bucket/prefix``."""
    endpoint_url: str | None = None
    """S3 endpoint for S3-compatible stores (MinIO, Ceph, ...)."""
    credentials_secret: str = ""
    """Secret with the S3 access key id and secret access key."""
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class DatabaseSpec:
    secret_name: str = ""
    """Secret holding the PostgreSQL DSN."""
    key: str = "uri"
    """Key of the DSN inside the Secret. Default ``uri``."""


@dataclass(frozen=True)
class AuthSpec:
    enabled: bool = True
    """API keys on the API (DESIGN §11). Default true; false runs the API with
    ``CHROMA_INSECURE=true`` (anyone who reaches the Service may do anything)."""
    secret_name: str | None = None
    """An existing Secret whose ``keys`` entry is the keys file (``<scope> <key>`` lines).
    None: the operator generates ``<cluster>-api-keys`` once (one admin key)."""


@dataclass(frozen=True)
class EgressSpec:
    restrict: bool = False
    """Limit the egress of Chroma pods to DNS, this cluster's Qdrant and ``allow``.
    Default false: egress is open (PostgreSQL, S3 and the Kubernetes API are often
    outside the cluster, at addresses the operator cannot know)."""
    allow: tuple[dict[str, Any], ...] = ()
    """Extra NetworkPolicy egress rules when ``restrict`` (PostgreSQL, S3, an external
    Qdrant, the Kubernetes API for IndexJob launches)."""


@dataclass(frozen=True)
class NetworkPolicySpec:
    enabled: bool = True
    """Create the cluster's NetworkPolicies. Default true."""
    api_from: tuple[dict[str, Any], ...] = ()
    """NetworkPolicy peers allowed to reach the API port. Empty (default): pods of the
    cluster's own namespace."""
    ingress_controller_namespace: str | None = None
    """Namespace of the ingress controller, also allowed to reach the API."""
    egress: EgressSpec = field(default_factory=EgressSpec)


@dataclass(frozen=True)
class ClusterSpec:
    image: str = c.DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    suspend: bool = False
    """Scale every component to zero and keep the data (PVCs, S3, PostgreSQL)."""
    api: ApiSpec = field(default_factory=ApiSpec)
    workers: WorkersSpec = field(default_factory=WorkersSpec)
    qdrant: QdrantSpec = field(default_factory=QdrantSpec)
    storage: StorageSpec = field(default_factory=StorageSpec)
    database: DatabaseSpec = field(default_factory=DatabaseSpec)
    auth: AuthSpec = field(default_factory=AuthSpec)
    network_policy: NetworkPolicySpec = field(default_factory=NetworkPolicySpec)

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> ClusterSpec:
        spec = spec or {}
        api = spec.get("api") or {}
        ing = api.get("ingress") or {}
        workers = spec.get("workers") or {}
        qd = spec.get("qdrant") or {}
        qd_storage = qd.get("storage") or {}
        st = spec.get("storage") or {}
        creds = st.get("credentialsSecret") or {}
        db = spec.get("database") or {}
        db_secret = db.get("secret") or {}
        qd_key = qd.get("apiKeySecret") or {}
        auth = spec.get("auth") or {}
        netpol = spec.get("networkPolicy") or {}
        egress = netpol.get("egress") or {}
        return cls(
            image=spec.get("image") or c.DEFAULT_IMAGE,
            image_pull_policy=spec.get("imagePullPolicy") or "IfNotPresent",
            suspend=bool(spec.get("suspend", False)),
            api=ApiSpec(
                replicas=_int(api.get("replicas"), 2),
                resources=dict(api.get("resources") or {}),
                service_type=api.get("serviceType") or "ClusterIP",
                ingress=IngressSpec(
                    enabled=bool(ing.get("enabled", False)),
                    host=ing.get("host"),
                    class_name=ing.get("className"),
                    path=ing.get("path") or "/",
                    tls_secret_name=ing.get("tlsSecretName"),
                ),
            ),
            workers=WorkersSpec(
                replicas=_int(workers.get("replicas"), 1),
                resources=dict(workers.get("resources") or {}),
            ),
            qdrant=QdrantSpec(
                mode=qd.get("mode") or "Managed",
                url=qd.get("url"),
                image=qd.get("image") or c.DEFAULT_QDRANT_IMAGE,
                replicas=_int(qd.get("replicas"), 1),
                storage_size=qd_storage.get("size") or "10Gi",
                storage_class_name=qd_storage.get("storageClassName"),
                resources=dict(qd.get("resources") or {}),
                api_key_secret=qd_key.get("name"),
                api_key_key=qd_key.get("key") or c.QDRANT_API_KEY_KEY,
            ),
            storage=StorageSpec(
                url=st.get("url") or "",
                endpoint_url=st.get("endpointUrl"),
                credentials_secret=creds.get("name") or "",
                access_key_id_key=creds.get("accessKeyIdKey") or "AWS_ACCESS_KEY_ID",
                secret_access_key_key=creds.get("secretAccessKeyKey") or "AWS_SECRET_ACCESS_KEY",
            ),
            database=DatabaseSpec(
                secret_name=db_secret.get("name") or "",
                key=db_secret.get("key") or "uri",
            ),
            auth=AuthSpec(
                enabled=bool(auth.get("enabled", True)),
                secret_name=auth.get("secretName"),
            ),
            network_policy=NetworkPolicySpec(
                enabled=bool(netpol.get("enabled", True)),
                api_from=tuple(dict(p) for p in netpol.get("apiFrom") or ()),
                ingress_controller_namespace=netpol.get("ingressControllerNamespace"),
                egress=EgressSpec(
                    restrict=bool(egress.get("restrict", False)),
                    allow=tuple(dict(r) for r in egress.get("allow") or ()),
                ),
            ),
        )


@dataclass(frozen=True)
class IndexJobSpec:
    cluster: str
    """Name of the ChromaCluster (same namespace) whose image and configuration run the job."""
    operation: str
    """One of ``chroma.indexjob.OPERATIONS`` (the CRD enum)."""
    embedding_set: str
    """The embedding set key the operation works on."""
    backoff_limit: int = 3
    """Retries before the Job is marked failed. Default 3."""
    ttl_seconds_after_finished: int = 86400
    """Seconds a finished Job (and its pods) is kept. Default one day."""
    active_deadline_seconds: int | None = None
    """Wall-clock limit for the whole Job; none means no limit."""
    resources: Resources = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the operation (scalar values), passed to the Job as ``--param``."""

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> IndexJobSpec:
        return cls(
            cluster=spec["cluster"],
            operation=spec["operation"],
            embedding_set=spec["embeddingSet"],
            backoff_limit=_int(spec.get("backoffLimit"), 3),
            ttl_seconds_after_finished=_int(spec.get("ttlSecondsAfterFinished"), 86400),
            active_deadline_seconds=spec.get("activeDeadlineSeconds"),
            resources=dict(spec.get("resources") or {}),
            params=dict(spec.get("params") or {}),
        )


@dataclass(frozen=True)
class DatasetSpec:
    cluster: str
    """Name of the ChromaCluster (same namespace) that holds the dataset."""
    name: str
    """Dataset name in the catalog; defaults to the resource name."""
    split: str
    """``training`` or ``production``."""
    embedding_set: dict[str, str] = field(default_factory=dict)
    """The embedding set fields (model, version, layer, ...)."""
    retention_days: int | None = None
    """Production records older than this many days are expired; none keeps them."""
    description: str | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any], resource_name: str) -> DatasetSpec:
        retention = spec.get("retention") or {}
        return cls(
            cluster=spec["cluster"],
            name=spec.get("datasetName") or resource_name,
            split=spec["split"],
            embedding_set=dict(spec.get("embeddingSet") or {}),
            retention_days=retention.get("maxAgeDays"),
            description=spec.get("description"),
        )
