"""The HTTP models of the REST API, one module per resource: the contract that shapes
the OpenAPI document (``chroma-api.yaml``).

Naming: ``<Thing>Public`` is what a GET answers, ``<Things>Public`` its list, ``<Thing>Create`` /
``<Thing>Register`` a request body, ``<Thing>Page`` a page with ``next_cursor``. Schema
names are part of the contract: renaming one changes ``chroma-api.yaml``.
"""

from chroma.api.models.common import BODY_ERRORS, ErrorBody, Health, Readiness
from chroma.api.models.datasets import (
    DatasetPublic,
    DatasetRegister,
    DatasetsPublic,
    DeletedRecords,
    DeleteRecords,
    RecordAssessment,
    RecordDetail,
    RecordPublic,
    RecordsPage,
    TaggedRecords,
    TagRecords,
)
from chroma.api.models.embeddingsets import EmbeddingSetPublic, EmbeddingSetsPublic
from chroma.api.models.log import LogRequest, LogResult, RecordIn
from chroma.api.models.maps import MapPending, MapPoints, MapReady
from chroma.api.models.operations import OperationCreate, OperationPublic, OperationsPublic
from chroma.api.models.query import (
    MAX_QUERIES,
    Neighbour,
    QueryFilter,
    QueryRequest,
    QueryResponse,
    QueryResult,
)
from chroma.api.models.recommendations import (
    LabelledRecords,
    MarkLabelled,
    RecommendationItem,
    RecommendationPage,
)
from chroma.api.models.status import ComponentPublic, IndexStatus, StatusPublic

__all__ = [
    "BODY_ERRORS",
    "MAX_QUERIES",
    "ComponentPublic",
    "DatasetPublic",
    "DatasetRegister",
    "DatasetsPublic",
    "DeleteRecords",
    "DeletedRecords",
    "EmbeddingSetPublic",
    "EmbeddingSetsPublic",
    "ErrorBody",
    "Health",
    "IndexStatus",
    "LabelledRecords",
    "LogRequest",
    "LogResult",
    "MapPending",
    "MapPoints",
    "MapReady",
    "MarkLabelled",
    "Neighbour",
    "OperationCreate",
    "OperationPublic",
    "OperationsPublic",
    "QueryFilter",
    "QueryRequest",
    "QueryResponse",
    "QueryResult",
    "Readiness",
    "RecommendationItem",
    "RecommendationPage",
    "RecordAssessment",
    "RecordDetail",
    "RecordIn",
    "RecordPublic",
    "RecordsPage",
    "StatusPublic",
    "TagRecords",
    "TaggedRecords",
]
