"""The group committer's own logic: grouping, per-request failure isolation, ack after durable.

The catalog and the file store are small in-memory test doubles of the two interfaces the
committer uses (``Catalog.bind`` / ``claim_files`` / ``commit_files`` / ``release_claims``
and ``FileStore.write_table`` / ``delete``), doubles of our own interfaces, which is fine
for unit tests of our own logic. The doubles keep the promises the committer relies on:
``commit_files`` takes the paths' claims (refusing unclaimed ones), calls
``files_durable()`` last, before it commits, and commits nothing if that raises. The
real catalog and store are exercised in tests/integration (e.g. test_log_api.py,
test_compaction.py, test_commit_isolation.py).

Ordering is proved with ``threading.Event`` gates (hold the file write or the catalog
commit, check the future is not done, release), never with sleeps. Grouping uses a window
far longer than the test and ``max_records`` equal to the records submitted, so a group
closes exactly when its last request arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from chroma.catalog import CommitOutcome, FileCommit
from chroma.errors import Conflict, InvalidInput, Unavailable
from chroma.ingest.committer import CommitResult, GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.storage import RecordBatch

WAIT_S = 10.0  # a bound on waiting for the commit thread, never a pause
LONG_WINDOW_S = 60.0


class CatalogDouble:
    """``bind`` and ``commit_files`` in memory; ``hold_commit`` keeps a commit open."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.datasets: dict[tuple[str, str, str], int] = {}
        self.bind_calls = 0
        self.bind_errors: dict[str, Exception] = {}  # embedding set key -> raised by bind
        self.commit_error: Exception | None = None
        self.committed: list[list[FileCommit]] = []
        self.in_commit = threading.Event()  # set once the files are durable, before COMMIT
        self.hold_commit: threading.Event | None = None
        self.claims: set[str] = set()
        self.commit_attempts: list[list[str]] = []  # record ids of each attempted commit
        self.refused_ids: set[str] = set()  # a commit holding one is refused as bad data

    def claim_files(self, paths: Sequence[str]) -> None:
        self.claims.update(paths)

    def release_claims(self, paths: Sequence[str]) -> list[str]:
        released = [p for p in paths if p in self.claims]
        self.claims.difference_update(released)
        return released

    def bind(self, key: str, fields: dict[str, Any], dimension: int, dataset: str,
             split: str) -> int:
        self.bind_calls += 1
        if key in self.bind_errors:
            raise self.bind_errors[key]
        return self.datasets.setdefault((key, dataset, split), len(self.datasets) + 1)

    def commit_files(self, commits: Sequence[FileCommit], *,
                     files_durable: Callable[[], Sequence[int]] | None = None,
                     ) -> list[CommitOutcome]:
        self.commit_attempts.append(sorted(i for c in commits for i in c.record_ids))
        if self.commit_error is not None:
            raise self.commit_error
        bad = self.refused_ids.intersection(i for c in commits for i in c.record_ids)
        if bad:
            raise InvalidInput(f"the catalog refused a record: {sorted(bad)[0]}")
        assert {c.path for c in commits} <= self.claims, "every path is claimed first"
        assert files_durable is not None
        files_durable()  # as the real one: last, before COMMIT; raising commits nothing
        self.in_commit.set()
        if self.hold_commit is not None:
            assert self.hold_commit.wait(WAIT_S)
        self.claims.difference_update(c.path for c in commits)
        self.committed.append(list(commits))
        self.events.append("catalog committed")
        return [CommitOutcome(file_id=i, inserted=len(c.record_ids), updated=0)
                for i, c in enumerate(commits)]


class StoreDouble:
    """``write_table`` in memory; ``hold`` keeps a write from becoming durable."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.files: dict[str, pa.Table] = {}
        self.writing = threading.Event()
        self.hold: threading.Event | None = None
        self.error: Exception | None = None

    def write_table(self, relpath: str, table: pa.Table) -> int:
        self.writing.set()
        if self.hold is not None:
            assert self.hold.wait(WAIT_S)
        if self.error is not None:
            raise self.error
        self.files[relpath] = table
        self.events.append("file durable")
        return table.nbytes

    def delete(self, relpath: str) -> None:
        self.files.pop(relpath, None)


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def catalog(events: list[str]) -> CatalogDouble:
    return CatalogDouble(events)


@pytest.fixture
def store(events: list[str]) -> StoreDouble:
    return StoreDouble(events)


@pytest.fixture
def committed_groups() -> list[list[CommitResult]]:
    return []


@pytest.fixture
def make_committer(catalog: CatalogDouble, store: StoreDouble,
                   committed_groups: list[list[CommitResult]],
                   ) -> Iterator[Callable[..., GroupCommitter]]:
    started: list[GroupCommitter] = []

    def make(**kwargs: Any) -> GroupCommitter:
        committer = GroupCommitter(catalog, store,  # type: ignore[arg-type]
                                   on_commit=committed_groups.append, **kwargs)
        committer.start()
        started.append(committer)
        return committer

    yield make
    for committer in started:
        committer.stop()


def batch(ids: list[str], *, key: str = "es-1", dataset: str = "cam-1",
          split: str = "production", dimension: int = 4) -> LogBatch:
    n = len(ids)
    records = RecordBatch(
        ids=ids, embeddings=np.ones((n, dimension), dtype=np.float32),
        input_uris=[None] * n, inference_classes=[None] * n, label_classes=[None] * n,
        scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset=dataset, split=split)
    return LogBatch({"model": "m"}, key, dataset, split, records)


def acked_after(future: Future[CommitResult], events: list[str]) -> None:
    """Record the acknowledgement in ``events`` when (and only when) it happens."""
    future.add_done_callback(lambda _: events.append("acked"))


def submit_concurrently(committer: GroupCommitter,
                        requests: list[list[LogBatch]]) -> list[Future[CommitResult]]:
    """Submit each request from its own thread, all released at once."""
    barrier = threading.Barrier(len(requests))
    futures: list[Future[CommitResult] | None] = [None] * len(requests)

    def submit(i: int) -> None:
        barrier.wait(WAIT_S)
        futures[i] = committer.submit(requests[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert all(f is not None for f in futures)
    return futures  # type: ignore[return-value]


# -- grouping -------------------------------------------------------------------------------


def test_concurrent_requests_share_one_file_per_dataset_and_one_transaction(
        make_committer, catalog: CatalogDouble, store: StoreDouble,
        committed_groups: list[list[CommitResult]]) -> None:
    requests = [[batch(["a1", "a2"], dataset="cam-1")],
                [batch(["b1"], dataset="cam-2")],
                [batch(["a3", "a4", "a5"], dataset="cam-1")]]
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=6)

    futures = submit_concurrently(committer, requests)
    results = [f.result(WAIT_S) for f in futures]

    assert len(catalog.committed) == 1, "one catalog transaction for the group"
    [commits] = catalog.committed
    by_dataset = {c.path.split("/")[1]: sorted(c.record_ids) for c in commits}
    assert by_dataset == {"cam-1": ["a1", "a2", "a3", "a4", "a5"], "cam-2": ["b1"]}
    assert sorted(store.files) == sorted(c.path for c in commits)  # one file per dataset
    assert all(p.startswith("es-1/") and p.endswith(".parquet") for p in store.files)
    assert [sorted(r.ids) for r in results] == [["a1", "a2"], ["b1"], ["a3", "a4", "a5"]]
    assert sum(r.inserted for r in results) == 6  # each file's count told once
    assert committer.stats == {"commits": 1, "records": 6}
    assert len(committed_groups) == 1 and len(committed_groups[0]) == 3


def test_one_request_of_several_datasets_is_one_result(make_committer) -> None:
    committer = make_committer(window_s=0)
    result = committer.submit([batch(["p1"], dataset="cam-1"),
                               batch(["t1"], dataset="train", split="training")]
                              ).result(WAIT_S)
    assert (result.ids, result.splits) == (["p1", "t1"], {"production", "training"})
    assert result.production_ids == {"cam-1": ["p1"]}


def test_the_last_record_logged_for_an_id_wins_within_a_file(
        make_committer, catalog: CatalogDouble) -> None:
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=3)
    submit_concurrently(committer, [[batch(["x", "y"])], [batch(["x"])]])[0].result(WAIT_S)
    [[commit]] = catalog.committed
    assert sorted(commit.record_ids) == ["x", "y"]


def test_a_binding_is_asked_of_the_catalog_once(make_committer,
                                                catalog: CatalogDouble) -> None:
    committer = make_committer(window_s=0)
    for i in range(3):
        committer.submit([batch([f"r{i}"])]).result(WAIT_S)
    assert catalog.bind_calls == 1
    assert len(catalog.committed) == 3


# -- per-request failure isolation ----------------------------------------------------------


@pytest.mark.parametrize(("raised", "expected"), [
    (Conflict("dimension 4 does not match 8"), Conflict),
    (KeyError("a bug in the check"), Unavailable),
], ids=["its-own-check", "an-unexpected-fault"])
def test_a_request_failing_its_checks_fails_alone(
        make_committer, catalog: CatalogDouble, raised: Exception,
        expected: type[Exception]) -> None:
    catalog.bind_errors["es-bad"] = raised
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=4)

    good1, bad, good2 = submit_concurrently(committer, [
        [batch(["g1"])], [batch(["b1", "b2"], key="es-bad")], [batch(["g2"])]])

    with pytest.raises(expected):
        bad.result(WAIT_S)
    assert (good1.result(WAIT_S).ids, good2.result(WAIT_S).ids) == (["g1"], ["g2"])
    [[commit]] = catalog.committed
    assert sorted(commit.record_ids) == ["g1", "g2"]


def test_a_group_with_nothing_accepted_commits_nothing(
        make_committer, catalog: CatalogDouble, store: StoreDouble) -> None:
    catalog.bind_errors["es-bad"] = Conflict("no")
    committer = make_committer(window_s=0)
    with pytest.raises(Conflict):
        committer.submit([batch(["b1"], key="es-bad")]).result(WAIT_S)
    assert catalog.committed == [] and store.files == {}


@pytest.mark.parametrize("culprit", [0, 2, 4])
def test_one_requests_refused_data_fails_only_that_request(
        make_committer, catalog: CatalogDouble, store: StoreDouble,
        committed_groups: list[list[CommitResult]], culprit: int) -> None:
    catalog.refused_ids.add(f"r{culprit}-bad")
    requests = [[batch([f"r{i}-a", f"r{i}-bad" if i == culprit else f"r{i}-b"])]
                for i in range(5)]
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=10)

    futures = submit_concurrently(committer, requests)

    with pytest.raises(InvalidInput, match=f"r{culprit}-bad"):
        futures[culprit].result(WAIT_S)
    good = [f.result(WAIT_S) for i, f in enumerate(futures) if i != culprit]
    assert sorted(i for r in good for i in r.ids) == sorted(
        i for n, [b] in enumerate(requests) if n != culprit for i in b.records.ids)
    committed = sorted(i for commits in catalog.committed for c in commits
                       for i in c.record_ids)
    assert committed == sorted(i for r in good for i in r.ids)
    assert catalog.commit_attempts[0] == sorted(
        i for [b] in requests for i in b.records.ids), "first tried as one group"
    assert sum(len(g) for g in committed_groups) == 4  # every good request told once
    # The refused attempts left neither files nor claims behind.
    assert sorted(store.files) == sorted(c.path for cs in catalog.committed for c in cs)
    assert catalog.claims == set()


def test_an_outage_fails_the_whole_group_at_once_without_retrying(
        make_committer, catalog: CatalogDouble, store: StoreDouble) -> None:
    catalog.commit_error = Unavailable("catalog database error: connection lost")
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=4)

    futures = submit_concurrently(committer, [[batch([f"r{i}"])] for i in range(4)])

    for future in futures:
        with pytest.raises(Unavailable, match="connection lost"):
            future.result(WAIT_S)
    assert len(catalog.commit_attempts) == 1
    assert store.files == {} and catalog.claims == set()


# -- ack only after durable -----------------------------------------------------------------


def test_no_ack_while_the_file_write_is_not_durable(
        make_committer, store: StoreDouble, events: list[str]) -> None:
    store.hold = threading.Event()
    committer = make_committer(window_s=0)

    future = committer.submit([batch(["r1"])])
    acked_after(future, events)
    assert store.writing.wait(WAIT_S)
    assert not future.done()
    assert events == []

    store.hold.set()
    assert future.result(WAIT_S).ids == ["r1"]
    assert events == ["file durable", "catalog committed", "acked"]


def test_no_ack_until_the_catalog_commit_returned(
        make_committer, catalog: CatalogDouble, store: StoreDouble,
        events: list[str]) -> None:
    catalog.hold_commit = threading.Event()
    committer = make_committer(window_s=0)

    future = committer.submit([batch(["r1"])])
    acked_after(future, events)
    assert catalog.in_commit.wait(WAIT_S)
    assert len(store.files) == 1  # durable, yet not acknowledged: the commit is open
    assert not future.done()

    catalog.hold_commit.set()
    future.result(WAIT_S)
    assert events == ["file durable", "catalog committed", "acked"]


# -- a failed group -------------------------------------------------------------------------


def test_a_catalog_failure_fails_the_whole_group_with_unavailable(
        make_committer, catalog: CatalogDouble,
        committed_groups: list[list[CommitResult]]) -> None:
    catalog.commit_error = ConnectionError("server closed the connection")
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=3)

    futures = submit_concurrently(committer, [[batch(["a"])], [batch(["b"])],
                                              [batch(["c"])]])

    for future in futures:
        with pytest.raises(Unavailable, match="server closed the connection"):
            future.result(WAIT_S)
    assert committed_groups == [] and committer.stats["commits"] == 0
    assert len(catalog.commit_attempts) == 1, "an unexplained failure is not retried"


def test_a_catalog_chroma_error_reaches_every_request_as_it_is(
        make_committer, catalog: CatalogDouble) -> None:
    catalog.commit_error = Conflict("a concurrent rebind")
    committer = make_committer(window_s=LONG_WINDOW_S, max_records=2)
    for future in submit_concurrently(committer, [[batch(["a"])], [batch(["b"])]]):
        with pytest.raises(Conflict):
            future.result(WAIT_S)


def test_a_failed_file_write_commits_nothing_and_fails_the_group(
        make_committer, catalog: CatalogDouble, store: StoreDouble,
        committed_groups: list[list[CommitResult]]) -> None:
    store.error = OSError("disk full")
    committer = make_committer(window_s=0)
    with pytest.raises(Unavailable, match="disk full"):
        committer.submit([batch(["a"])]).result(WAIT_S)
    assert catalog.committed == [] and committed_groups == []

    store.error = None  # the commit thread survived the failure
    assert committer.submit([batch(["b"])]).result(WAIT_S).ids == ["b"]


# -- lifecycle ------------------------------------------------------------------------------


def test_submitting_to_a_stopped_committer_is_unavailable(
        catalog: CatalogDouble, store: StoreDouble) -> None:
    committer = GroupCommitter(catalog, store)  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="not running"):
        committer.submit([batch(["a"])]).result(WAIT_S)


def test_stop_commits_what_was_already_submitted(
        make_committer, store: StoreDouble) -> None:
    store.hold = threading.Event()
    committer = make_committer(window_s=0)
    first = committer.submit([batch(["a"])])
    assert store.writing.wait(WAIT_S)  # the commit thread is busy with the first
    second = committer.submit([batch(["b"])])
    store.hold.set()
    committer.stop()
    assert (first.result(0).ids, second.result(0).ids) == (["a"], ["b"])


# -- memory ---------------------------------------------------------------------------------


def test_the_commit_thread_keeps_no_batch_once_it_is_acknowledged(
        catalog: CatalogDouble, store: StoreDouble) -> None:
    """While it waits for the next request the commit thread holds nothing of the last
    group: the API kept a whole bulk request (20,000 records: vectors, ids, tags) alive
    between ingests through the thread's loop variables."""
    import gc
    import weakref

    committer = GroupCommitter(catalog, store)  # type: ignore[arg-type]
    committer.start()
    try:
        logged = batch(["a1", "a2"])
        gone = weakref.ref(logged)
        future = committer.submit([logged])
        future.result(WAIT_S)
        del logged, future
        gc.collect()
        assert gone() is None, "the committed batch is still referenced"
        assert committer.submit([batch(["b1"])]).result(WAIT_S).count == 1  # still works
    finally:
        committer.stop()
