"""Compaction merges small files with an atomic manifest swap; sweeps remove strays."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from chroma.catalog import Catalog, Database, FileCommit, apply_migrations
from chroma.errors import Unavailable
from chroma.ingest import GroupCommitter
from chroma.ingest.compaction import compact_dataset, merge_live_rows, sweep
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch, open_store

pytestmark = pytest.mark.integration

ES = {"model": "compaction"}
WAIT_S = 60.0  # a bound on waiting for another thread, never a pause


@pytest.fixture
def parts(database_url: str, storage_env: dict[str, str], uid: str) -> Iterator[tuple]:
    apply_migrations(database_url)
    db = Database(database_url)
    db.open()
    store = open_store(
        Settings(
            storage_url=storage_env["CHROMA_STORAGE_URL"] + f"/{uid}",
            s3_endpoint_url=storage_env.get("CHROMA_S3_ENDPOINT_URL"),
        )
    )
    committer = GroupCommitter(Catalog(db), store)
    yield Catalog(db), store, committer
    db.close()


def batch(dataset: str, ids: list[str], value: float) -> list[LogBatch]:
    matrix = np.full((len(ids), 4), value, dtype=np.float32)
    n = len(ids)
    records = RecordBatch(
        ids=ids,
        embeddings=matrix,
        input_uris=[f"u-{i}" for i in ids],
        inference_classes=[None] * n,
        label_classes=["c"] * n,
        scores_json=[None] * n,
        tags=[[] for _ in ids],
        metadata_json=[None] * n,
        dataset=dataset,
        split="training",
    )
    return [LogBatch(ES, embedding_set_key(ES), dataset, "training", records)]


def read_all(catalog: Catalog, store: FileStore, dataset: str) -> dict[str, float]:
    found = {}
    for row in catalog.list_records(dataset, limit=10_000):
        table = store.read_table(row.file_path)
        assert table.column("id")[row.row_index].as_py() == row.record_id
        found[row.record_id] = table.column("embedding")[row.row_index].as_py()[0]
    return found


def test_compaction_merges_live_rows_and_keeps_every_record(parts, uid: str) -> None:
    catalog, store, committer = parts
    dataset = f"c-{uid}"
    for i in range(6):
        committer.commit(batch(dataset, [f"r{i}a", f"r{i}b", "shared"], float(i)))
    catalog.delete_records(dataset, ["r0a"])
    before = read_all(catalog, store, dataset)
    assert before["shared"] == 5.0 and len(before) == 12

    result = compact_dataset(catalog, store, dataset, small_file_rows=100)
    assert result.files_merged == 6 and result.records_moved == 12
    after = read_all(catalog, store, dataset)
    assert after == before
    rows = catalog.list_records(dataset, limit=100)
    assert {r.file_path for r in rows} == {result.new_path}
    assert catalog.get_dataset(dataset).record_count == 12

    # Retired files disappear after the grace period; the merged one stays. (The catalog is
    # shared with the other tests of the session, whose retired files go too: at least 6.)
    assert sweep(catalog, store, grace_s=0).retired_deleted >= 6
    remaining = [p for p in store.list_files() if f"/{dataset}/" in p]
    assert remaining == [result.new_path]
    assert read_all(catalog, store, dataset) == before


def test_a_record_changed_during_compaction_is_not_clobbered(parts, uid: str) -> None:
    catalog, store, committer = parts
    dataset = f"race-{uid}"
    committer.commit(batch(dataset, ["x", "y"], 1.0))
    committer.commit(batch(dataset, ["z"], 2.0))
    files = catalog.small_files(catalog.get_dataset(dataset).id, 100)
    merged, moves = merge_live_rows(catalog, store, files)
    # "x" is logged again after the compactor read the rows, before it swaps.
    committer.commit(batch(dataset, ["x"], 9.0))
    catalog.claim_files([f"{embedding_set_key(ES)}/{dataset}/merged.parquet"])
    store.write_table(f"{embedding_set_key(ES)}/{dataset}/merged.parquet", merged)
    moved = catalog.swap_files(
        catalog.get_dataset(dataset).id,
        [f for f, _ in files],
        f"{embedding_set_key(ES)}/{dataset}/merged.parquet",
        0,
        moves,
    )
    assert moved == 2  # y and z, not x
    assert read_all(catalog, store, dataset) == {"x": 9.0, "y": 1.0, "z": 2.0}


def test_sweep_removes_orphans_of_a_crash_but_not_live_files(parts, uid: str) -> None:
    catalog, store, committer = parts
    dataset = f"o-{uid}"
    committer.commit(batch(dataset, ["a"], 1.0))
    # A crash between the durable write and the catalog commit leaves such a file.
    store.write_bytes(f"{embedding_set_key(ES)}/{dataset}/part-orphan.parquet", b"PAR1")
    assert sweep(catalog, store, grace_s=3600).orphans_deleted == 0  # too young
    assert sweep(catalog, store, grace_s=0).orphans_deleted >= 1
    files = store.list_files(f"{embedding_set_key(ES)}/{dataset}")
    assert not any("orphan" in f for f in files)
    assert read_all(catalog, store, dataset) == {"a": 1.0}


# -- files in flight: written, not yet committed -----------------------------------------


@contextmanager
def gated_writes(store: FileStore) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold every ``write_table`` of ``store`` after the file is durable, until released:
    the moment a writer has its file in the store and its catalog commit still ahead."""
    written, release = threading.Event(), threading.Event()
    real_write = store.write_table

    def write_then_wait(relpath: str, table: pa.Table) -> int:
        size = real_write(relpath, table)
        written.set()
        assert release.wait(WAIT_S)
        return size

    store.write_table = write_then_wait  # type: ignore[method-assign]
    try:
        yield written, release
    finally:
        release.set()
        store.write_table = real_write  # type: ignore[method-assign]


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_sweep_never_deletes_a_log_file_written_but_not_yet_committed(
        parts, uid: str) -> None:
    catalog, store, committer = parts
    dataset = f"inflight-{uid}"
    committer.commit(batch(dataset, ["old"], 1.0))
    with gated_writes(store) as (written, release):
        thread, outcome = in_thread(
            lambda: committer.commit(batch(dataset, ["new-1", "new-2"], 2.0)))
        assert written.wait(WAIT_S)  # durable in the store, not yet in the catalog
        sweep(catalog, store, grace_s=0)
        release.set()
        thread.join(WAIT_S)
    assert "error" not in outcome, outcome
    assert read_all(catalog, store, dataset) == {"old": 1.0, "new-1": 2.0, "new-2": 2.0}


def test_a_sweep_never_deletes_a_compacted_file_before_its_swap(parts, uid: str) -> None:
    catalog, store, committer = parts
    dataset = f"inflight-compact-{uid}"
    for i in range(3):
        committer.commit(batch(dataset, [f"r{i}"], float(i)))
    with gated_writes(store) as (written, release):
        thread, outcome = in_thread(
            lambda: compact_dataset(catalog, store, dataset, small_file_rows=100))
        assert written.wait(WAIT_S)  # the merged file is durable, the swap still ahead
        sweep(catalog, store, grace_s=0)
        release.set()
        thread.join(WAIT_S)
    assert "error" not in outcome, outcome
    sweep(catalog, store, grace_s=0)  # the retired small files go; the merged one stays
    assert read_all(catalog, store, dataset) == {"r0": 0.0, "r1": 1.0, "r2": 2.0}


def test_an_expired_claim_is_swept_and_its_late_commit_refused(parts, uid: str) -> None:
    """A writer that crashed (or outlived its lease) leaves a claim and a file: the sweep
    removes both, and should the writer come back, its commit is refused, not dangling."""
    catalog, store, _ = parts
    dataset = f"lease-{uid}"
    dataset_id = catalog.bind(embedding_set_key(ES), ES, 4, dataset, "training")
    path = f"{embedding_set_key(ES)}/{dataset}/part-slow.parquet"
    catalog.claim_files([path], lease_s=0)
    store.write_bytes(path, b"PAR1")

    swept = sweep(catalog, store, grace_s=3600)

    assert swept.expired_claims == 1 and not store.exists(path)
    with pytest.raises(Unavailable, match="no claim"):
        catalog.commit_files([FileCommit(
            dataset_id=dataset_id, path=path, size_bytes=4, record_ids=["late"],
            input_uris=[None], inference_classes=[None], label_classes=[None], tags=[[]],
            logged_at=datetime.now(UTC))])
    assert catalog.list_records(dataset) == []


# -- repair: a file deleted behind Chroma's back ------------------------------------------


def test_compaction_repairs_a_file_missing_from_the_store_instead_of_failing(
        parts, uid: str) -> None:
    """Decided: the records whose only copy is gone are deleted from the catalog (as
    deletions, so the index drops them), logged and reported; the rest is compacted."""
    catalog, store, committer = parts
    dataset = f"lost-{uid}"
    for i in range(3):
        committer.commit(batch(dataset, [f"r{i}a", f"r{i}b"], float(i)))
    lost_path = catalog.get_records(dataset, ["r1a"])[0].file_path
    store.delete(lost_path)  # behind Chroma's back
    seq_before = catalog.changes.latest_seq(embedding_set_key(ES))

    result = compact_dataset(catalog, store, dataset, small_file_rows=100)

    assert [(f.path, sorted(f.record_ids)) for f in result.lost] == [
        (lost_path, ["r1a", "r1b"])]
    assert result.files_merged == 2 and result.records_moved == 4
    assert read_all(catalog, store, dataset) == {"r0a": 0.0, "r0b": 0.0, "r2a": 2.0, "r2b": 2.0}
    assert catalog.get_dataset(dataset).record_count == 4
    deleted = catalog.changes.deletions_since(embedding_set_key(ES), seq_before)
    assert sorted(d.record_id for d in deleted if d.dataset == dataset) == ["r1a", "r1b"]
    # Later compactions no longer meet the missing file.
    committer.commit(batch(dataset, ["r3"], 3.0))
    again = compact_dataset(catalog, store, dataset, small_file_rows=100)
    assert again.lost == [] and again.files_merged == 2
    assert read_all(catalog, store, dataset)["r3"] == 3.0
