"""The fresh feed's pause for a set without an index: what comes during it is sent once
when it ends (the set's first index run may have finished meanwhile), not dropped; where
a group commit puts each record it hands the feed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from chroma.api import freshfeed
from chroma.ingest.validation import LogBatch
from chroma.settings import Settings
from chroma.storage import RecordBatch


def _batch(ids: list[str]) -> LogBatch:
    n = len(ids)
    records = RecordBatch(
        ids=ids, embeddings=np.ones((n, 4), np.float32), input_uris=[None] * n,
        inference_classes=[None] * n, label_classes=[None] * n, scores_json=[None] * n,
        tags=[[] for _ in ids], metadata_json=[None] * n, dataset="ds", split="production")
    return LogBatch({"model": "m"}, "key", "ds", "production", records)


def test_records_logged_during_the_pause_are_sent_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[list[str]] = []
    indexed = threading.Event()  # the set's first index run has published its version

    def feed_fresh(settings, key, records, vectors, as_of):  # type: ignore[no-untyped-def]
        if not indexed.is_set():
            return -1  # the host: no index for this set (yet)
        sent.append([r.record_id for r in records])
        return len(records)

    monkeypatch.setattr(freshfeed, "feed_fresh", feed_fresh)
    monkeypatch.setattr(freshfeed, "UNINDEXED_PAUSE_S", 0.3)
    feed = freshfeed.FreshFeed(Settings())
    try:
        feed._queue.put(freshfeed._Fresh(_batch(["first"]), time.time(), time.time()))
        time.sleep(0.05)  # refused: the pause starts
        indexed.set()  # the first index run ends here, having read "first" only
        feed._queue.put(freshfeed._Fresh(_batch(["later"]), time.time(), time.time()))
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        feed.close()
    assert sent == [["later"]]  # once, after the pause; "first" is the index run's


def test_a_group_commit_names_each_record_s_row_in_its_file_and_minus_one_if_replaced() -> None:
    """Two requests of one group commit log ``b`` to the same dataset: the file holds only
    the last (``keep_last_per_id``), so the first one's row is -1 and the rows of the
    others are their places among what is kept, in order."""
    from chroma.ingest.committer import _rows

    first, second = _batch(["a", "b", "c"]), _batch(["b", "d"])
    rows = _rows([first, second], "set/ds/part-1.parquet")
    assert rows[id(first)] == ("set/ds/part-1.parquet", [0, -1, 1])
    assert rows[id(second)] == ("set/ds/part-1.parquet", [2, 3])


def test_the_feeder_keeps_no_batch_once_it_was_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """While it waits for the next commit the feeder thread holds nothing of what it sent
    (its loop variables kept the last commit's records and vectors alive)."""
    import gc
    import weakref

    sent = threading.Event()

    def feed_fresh(settings, key, records, vectors, as_of):  # type: ignore[no-untyped-def]
        sent.set()
        return len(records)

    monkeypatch.setattr(freshfeed, "feed_fresh", feed_fresh)
    feed = freshfeed.FreshFeed(Settings())
    try:
        logged = _batch(["one"])
        gone = weakref.ref(logged)
        feed._queue.put(freshfeed._Fresh(logged, time.time(), time.time()))
        assert sent.wait(10)
        del logged
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:  # the send returns
            gc.collect()
            time.sleep(0.02)
        assert gone() is None, "the sent batch is still referenced"
    finally:
        feed.close()
