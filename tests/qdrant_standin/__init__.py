"""A STAND-IN for a Qdrant server, for tests only: not Qdrant.

No Qdrant server binary or image can be obtained on our machines, so Pod-level tests
(tests/e2e) and HTTP-level tests point Chroma's remote index backend
(``chroma.index.remote``, qdrant-client over REST, ``prefer_grpc`` false) at this small
FastAPI app instead. It speaks the subset of Qdrant's REST API that backend calls, and
every call is executed by qdrant-client's own *local mode* (``QdrantClient(":memory:")``,
or a directory with ``--path``): results are real qdrant-client local semantics (exact
search, aliases, filters), not a re-implementation. What it does not have: HNSW graphs,
payload indexes (accepted and ignored, as local mode does), gRPC, snapshots, clustering.

    python -m tests.qdrant_standin --host 127.0.0.1 --port 6333 [--path DIR] [--api-key K]

Endpoints: see ``app.ROUTES``. ``/readyz``, ``/livez`` and ``/healthz`` answer like
Qdrant's, so the operator's managed StatefulSet probes work unchanged.
"""

from tests.qdrant_standin.app import ROUTES, create_app

__all__ = ["ROUTES", "create_app"]
