"""One request's bad record fails only that request, through the real catalog and store.

Validation refuses NUL bytes before a record joins a group; this tests the second line of
defence: a value PostgreSQL refuses that did reach the group commit (injected here by
calling the committer directly, bypassing validation) fails its own request with
``InvalidInput`` while the other clients' requests in the same group commit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from chroma.catalog import Catalog, Database, apply_migrations
from chroma.errors import InvalidInput
from chroma.ingest import GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch, open_store

pytestmark = pytest.mark.integration

ES = {"model": "isolation"}
WAIT_S = 60.0  # a bound on waiting for the commit thread, never a pause
NUL = "bad\x00value"


@pytest.fixture
def parts(database_url: str, storage_env: dict[str, str],
          uid: str) -> Iterator[tuple[Catalog, FileStore, GroupCommitter]]:
    apply_migrations(database_url)
    db = Database(database_url)
    db.open()
    store = open_store(Settings(
        storage_url=storage_env["CHROMA_STORAGE_URL"] + f"/{uid}",
        s3_endpoint_url=storage_env.get("CHROMA_S3_ENDPOINT_URL")))
    # A window far longer than the test and max_records = everything submitted: the
    # group closes exactly when the last request arrives, so all share one commit.
    committer = GroupCommitter(Catalog(db), store, window_s=WAIT_S, max_records=6)
    committer.start()
    yield Catalog(db), store, committer
    committer.stop()
    db.close()


def request(dataset: str, ids: list[str], value: float, *, bad_field: str | None = None,
            ) -> list[LogBatch]:
    n = len(ids)
    fields: dict[str, list] = {
        "input_uris": [f"s3://in/{i}" for i in ids], "inference_classes": ["cat"] * n,
        "tags": [["t"] for _ in ids]}
    if bad_field == "id":
        ids = [*ids[:-1], NUL]
    elif bad_field == "tag":
        fields["tags"][-1] = ["ok", NUL]
    elif bad_field is not None:
        fields[bad_field][-1] = NUL
    records = RecordBatch(
        ids=ids, embeddings=np.full((n, 4), value, np.float32), label_classes=[None] * n,
        scores_json=[None] * n, metadata_json=[None] * n, dataset=dataset, split="training",
        **fields)
    return [LogBatch(ES, embedding_set_key(ES), dataset, "training", records)]


@pytest.mark.parametrize("bad_field", ["id", "input_uris", "inference_classes", "tag"])
def test_a_record_postgresql_refuses_fails_only_its_own_request(
        parts, uid: str, bad_field: str) -> None:
    catalog, store, committer = parts
    dataset = f"iso-{uid}"
    futures = [
        committer.submit(request(dataset, ["a1", "a2"], 1.0)),                  # client A
        committer.submit(request(dataset, ["b1", "b2"], 2.0, bad_field=bad_field)),  # B
        committer.submit(request(dataset, ["c1", "c2"], 3.0)),                  # client C
    ]

    with pytest.raises(InvalidInput, match="refused"):
        futures[1].result(WAIT_S)
    assert futures[0].result(WAIT_S).ids == ["a1", "a2"]
    assert futures[2].result(WAIT_S).ids == ["c1", "c2"]

    stored = {}
    for row in catalog.list_records(dataset):
        table = store.read_table(row.file_path)
        stored[row.record_id] = table.column("embedding")[row.row_index].as_py()[0]
    assert stored == {"a1": 1.0, "a2": 1.0, "c1": 3.0, "c2": 3.0}
    # The refused attempts' files were removed: every file left is referenced.
    referenced = {row.file_path for row in catalog.list_records(dataset)}
    assert set(store.list_files(f"{embedding_set_key(ES)}/{dataset}")) == referenced
