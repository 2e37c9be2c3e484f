"""Datasets and their records: list, read pages, delete, tag."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from chroma.api.deps import CatalogDep, ServicesDep, StoreDep
from chroma.api.models import (
    BODY_ERRORS,
    DatasetPublic,
    DatasetRegister,
    DatasetsPublic,
    DeletedRecords,
    DeleteRecords,
    ErrorBody,
    RecordAssessment,
    RecordDetail,
    RecordPublic,
    RecordsPage,
    TaggedRecords,
    TagRecords,
)
from chroma.api.models.params import (
    DatasetNamePath,
    EmbeddingSetKeyQuery,
    LimitQuery,
    NameCursorQuery,
    RecordIdPath,
)
from chroma.api.responses import ORJSONResponse
from chroma.catalog import DatasetInfo, StoredRecord
from chroma.errors import InvalidInput, NotFound, Unavailable
from chroma.ingest.validation import MAX_TEXT, NO_NUL_PATTERN
from chroma.labelling.records import RecordView, read_record
from chroma.storage import FileStore

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such dataset."}}
_NO_SET = {404: {"model": ErrorBody, "description": "No such embedding set."}}


def _public(info: DatasetInfo) -> DatasetPublic:
    return DatasetPublic(
        name=info.name, embedding_set_key=info.embedding_set_key, split=info.split,
        record_count=info.record_count, retention_days=info.retention_days,
        description=info.description, created_at=info.created_at, last_log=info.last_log,
    )


@router.get("", response_model=DatasetsPublic, responses=_NO_SET)
def list_datasets(
    catalog: CatalogDep, embedding_set_key: EmbeddingSetKeyQuery = None,
    cursor: NameCursorQuery = None, limit: LimitQuery = 100,
) -> DatasetsPublic:
    """Datasets in name order, a page at a time, optionally of one embedding set."""
    key = catalog.resolve_key(embedding_set_key) if embedding_set_key is not None else None
    found = catalog.list_datasets(key, after=cursor, limit=limit)
    data = [_public(d) for d in found]
    next_cursor = found[-1].name if len(found) == limit else None
    return DatasetsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.get("/{name}", response_model=DatasetPublic, responses=_NOT_FOUND)
def get_dataset(name: DatasetNamePath, catalog: CatalogDep) -> DatasetPublic:
    """One dataset with its live ``record_count``."""
    return _public(catalog.get_dataset(name))


@router.put(
    "/{name}",
    response_model=DatasetPublic,
    status_code=200,
    responses={
        **BODY_ERRORS,
        201: {"model": DatasetPublic, "description": "Created."},
        409: {"model": ErrorBody, "description": "Bound to another split or embedding set."},
        422: {"model": ErrorBody, "description": "Invalid name or body."},
    },
)
def register_dataset(
    name: DatasetNamePath,
    body: DatasetRegister,
    catalog: CatalogDep,
) -> ORJSONResponse:
    """Register a dataset ahead of its records (201), or update its retention (200)."""
    info, created = catalog.register_dataset(
        name, split=body.split, embedding_set=body.embedding_set,
        retention_days=body.retention_days, description=body.description,
    )
    return ORJSONResponse(_public(info).model_dump(mode="json"),
                          status_code=201 if created else 200)


@router.get("/{name}/records", response_model=RecordsPage, responses=_NOT_FOUND)
async def list_records(
    name: DatasetNamePath,
    catalog: CatalogDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: NameCursorQuery = None,
    after: Annotated[str | None, Query(
        max_length=MAX_TEXT, pattern=NO_NUL_PATTERN, deprecated=True,
        description="Deprecated name of `cursor`, accepted for one release.")] = None,
    include_embeddings: bool = False,
) -> RecordsPage:
    """A page of records in id order; embeddings only when asked (they are large)."""
    if cursor is not None and after is not None:
        raise InvalidInput("give cursor or its deprecated name after, not both")
    rows = await run_in_threadpool(catalog.list_records, name, after=cursor or after,
                                   limit=limit)
    embeddings = (
        await run_in_threadpool(_read_embeddings, store, rows) if include_embeddings else {}
    )
    data = [
        RecordPublic(
            id=r.record_id, dataset=r.dataset, input_uri=r.input_uri,
            inference_class=r.inference_class, label_class=r.label_class, tags=list(r.tags),
            logged_at=r.logged_at, embedding=embeddings.get(r.record_id),
        )
        for r in rows
    ]
    next_cursor = rows[-1].record_id if len(rows) == limit else None
    return RecordsPage(data=data, next_cursor=next_cursor)


@router.get("/{name}/records/{record_id}", response_model=RecordDetail,
            responses={404: {"model": ErrorBody, "description": "No such dataset or record."}})
def get_record(
    name: DatasetNamePath, record_id: RecordIdPath, catalog: CatalogDep, store: StoreDep
) -> RecordDetail:
    """One record: what was logged (but the embedding) and, for a scored production
    record, its assessment in the labelling queue."""
    return _detail(read_record(catalog, store, name, record_id))


def _detail(view: RecordView) -> RecordDetail:
    r, a = view.record, view.assessment
    assessment = None if a is None else RecordAssessment(
        score=a.score, percentile=a.percentile, verdict=a.verdict, signals=a.signals,
        raw_signals=a.raw_signals)
    return RecordDetail(
        id=r.record_id, dataset=r.dataset, split=r.split,
        embedding_set_key=view.embedding_set_key, input_uri=r.input_uri,
        inference_class=r.inference_class, label_class=r.label_class, scores=view.scores,
        tags=list(r.tags), metadata=view.metadata, logged_at=r.logged_at, assessment=assessment,
    )


@router.post("/{name}/records/delete", response_model=DeletedRecords,
             responses={**_NOT_FOUND, **BODY_ERRORS})
def delete_records(
    name: DatasetNamePath, body: DeleteRecords, catalog: CatalogDep, services: ServicesDep
) -> DeletedRecords:
    """Delete records by id; ids that do not exist are ignored (idempotent)."""
    deleted = catalog.delete_records(name, body.ids)
    if deleted:
        services.records_changed(catalog.get_dataset(name).embedding_set_key,
                                 invalidate_index=True)
    return DeletedRecords(deleted=deleted, count=len(deleted))


@router.delete("/{name}/records/{record_id}", response_model=DeletedRecords,
               responses=_NOT_FOUND)
def delete_record(
    name: DatasetNamePath, record_id: RecordIdPath, catalog: CatalogDep, services: ServicesDep
) -> DeletedRecords:
    """Delete one record (idempotent)."""
    deleted = catalog.delete_records(name, [record_id])
    if deleted:
        services.records_changed(catalog.get_dataset(name).embedding_set_key,
                                 invalidate_index=True)
    return DeletedRecords(deleted=deleted, count=len(deleted))


@router.post("/{name}/records/tags", response_model=TaggedRecords,
             responses={**_NOT_FOUND, **BODY_ERRORS})
def tag_records(
    name: DatasetNamePath, body: TagRecords, catalog: CatalogDep, services: ServicesDep
) -> TaggedRecords:
    """Add and remove tags on records."""
    updated = catalog.tag_records(name, body.ids, add=body.add, remove=body.remove)
    if updated:
        services.records_changed(catalog.get_dataset(name).embedding_set_key,
                                 invalidate_index=True)
    return TaggedRecords(updated=updated, count=len(updated))


def _read_embeddings(store: FileStore, rows: list[StoredRecord]) -> dict[str, list[float]]:
    by_file: dict[str, list[StoredRecord]] = defaultdict(list)
    for row in rows:
        by_file[row.file_path].append(row)
    found: dict[str, list[float]] = {}
    for path, file_rows in by_file.items():
        try:
            column = store.read_table(path, columns=["embedding"]).column("embedding")
        except NotFound as exc:  # listed by the catalog, lost by the store: see read_record
            raise Unavailable(f"records of {file_rows[0].dataset}: their file {path} is "
                              "missing from the store") from exc
        for row in file_rows:
            found[row.record_id] = column[row.row_index].as_py()
    return found


