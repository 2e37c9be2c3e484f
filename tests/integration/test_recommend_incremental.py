"""An incremental ``recommend`` leaves the labelling queue exactly as a full refresh of the
same data would (same records, same order, same scores and reasons, within float
rounding) while the model does not change: new records, records logged again, tagged,
labelled by logging a ``label_class``, marked labelled through the API, and deleted.

Real PostgreSQL and a real local store; records committed through the group committer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog, QueueEntry
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.labelling import runs, scorer
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch

pytestmark = pytest.mark.integration

ES = {"model": "incremental-recommend", "version": "1"}
KEY = embedding_set_key(ES)
DIM = 8
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture
def catalog(own_catalog: Catalog) -> Catalog:
    return own_catalog


class Logger:
    """Clustered records of three classes (production also far from every cluster)."""

    def __init__(self, catalog: Catalog, store: FileStore) -> None:
        self.committer = GroupCommitter(catalog, store)
        self.rng = np.random.default_rng(11)
        self.centres = self.rng.normal(size=(len(CLASSES), DIM)) * 4

    def log(self, dataset: str, split: str, ids: list[str], *, far: int = 0,
            labels: list[str | None] | None = None, tags: list[str] | None = None) -> None:
        n = len(ids)
        classes = self.rng.integers(0, len(CLASSES), n)
        vectors = self.centres[classes] + self.rng.normal(size=(n, DIM))
        vectors[:far] += 12.0  # the first ``far`` are out of distribution
        names = [CLASSES[c] for c in classes]
        probabilities = self.rng.dirichlet(np.ones(len(CLASSES)), n)
        scores = [None if i % 3 == 0 else  # some records log no scores
                  '{' + ", ".join(f'"{c}": {p:.6f}' for c, p in zip(CLASSES, row, strict=True))
                  + '}' for i, row in enumerate(probabilities)]
        if split == "training":
            labels = names
        records = RecordBatch(
            ids=ids, embeddings=vectors.astype(np.float32), input_uris=[None] * n,
            inference_classes=names, label_classes=labels or [None] * n,
            scores_json=scores, tags=[list(tags or []) for _ in range(n)],
            metadata_json=[None] * n, dataset=dataset, split=split)
        self.committer.commit([LogBatch(embedding_set=ES, embedding_set_key=KEY,
                                        dataset=dataset, split=split, records=records)])


def scored_in_pages(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> tuple[Logger, FileStore, Settings]:
    """A set scored once in pages of 7 records: 120 training, 10 production."""
    monkeypatch.setattr(runs, "PAGE", 7)
    store = FileStore(str(tmp_path / "store"))
    logger = Logger(catalog, store)
    settings = Settings(recommend_exact_knn_max=100_000)
    logger.log("train", "training", [f"t-{i}" for i in range(120)])
    logger.log("prod", "production", [f"p-{i}" for i in range(10)])
    recommend_one(LabellingJob(catalog, store, settings, KEY))
    return logger, store, settings


def _queue(catalog: Catalog) -> list[QueueEntry]:
    entries = catalog.queue.page(KEY, limit=100_000)
    assert len(entries) == catalog.queue.count(KEY)
    return entries


def _assert_same_queue(incremental: list[QueueEntry], full: list[QueueEntry]) -> None:
    assert [(e.dataset, e.record_id) for e in incremental] == [
        (e.dataset, e.record_id) for e in full]
    for got, want in zip(incremental, full, strict=True):
        where = f"{got.dataset}/{got.record_id}"
        assert got.score == pytest.approx(want.score, rel=1e-6, abs=1e-9), where
        assert got.percentile == pytest.approx(want.percentile, rel=1e-5, abs=1e-4), where
        assert got.verdict == want.verdict, where
        assert got.signals.keys() == want.signals.keys(), where
        assert got.raw_signals.keys() == want.raw_signals.keys(), where
        for name in want.signals:
            assert got.signals[name] == pytest.approx(want.signals[name], rel=1e-5,
                                                      abs=1e-6), (where, name)
            assert got.raw_signals[name] == pytest.approx(want.raw_signals[name], rel=1e-5,
                                                          abs=1e-6), (where, name)
        assert (got.tags, got.inference_class, got.logged_at) == (
            want.tags, want.inference_class, want.logged_at), where


@pytest.mark.parametrize("page", [runs.PAGE, 7], ids=["one-page", "pages-of-7"])
def test_an_incremental_run_leaves_the_queue_a_full_refresh_would(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int,
) -> None:
    monkeypatch.setattr(runs, "PAGE", page)  # pages read, scored and written overlapped
    store = FileStore(str(tmp_path / "store"))
    logger = Logger(catalog, store)
    settings = Settings(recommend_exact_knn_max=100_000)
    logger.log("train", "training", [f"t-{i}" for i in range(300)])
    logger.log("prod", "production", [f"p-{i}" for i in range(150)], far=15)
    first = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert first["full_refresh"] and first["scored"] == 150

    # Everything a queue may see between two runs, none of which changes the model.
    logger.log("prod", "production", [f"p-{i}" for i in range(150, 250)], far=10)
    logger.log("prod", "production", [f"p-{i}" for i in range(20, 30)], far=3)  # again
    logger.log("prod", "production", ["p-30", "p-31"], labels=["cat", "dog"])  # labelled
    logger.log("other-prod", "production", [f"o-{i}" for i in range(40)], far=4,
               tags=["night"])
    catalog.tag_records("prod", ["p-40", "p-41", "p-160"], add=["reviewed"])
    catalog.delete_records("prod", ["p-50", "p-51", "p-170"])
    marked = ["p-0", "p-1", "p-60"]
    assert sorted(catalog.queue.mark_labelled("prod", marked)) == marked

    incremental = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert not incremental["full_refresh"]
    assert incremental["scored"] == 99 + 10 + 2 + 40 + 2  # new (p-170 deleted), again,
    # labelled, another dataset, tagged (p-160 is new)
    assert incremental["removed"] == 3
    after_incremental = _queue(catalog)
    state = catalog.queue.state(KEY)

    full = recommend_one(LabellingJob(catalog, store, settings, KEY), full=True)
    assert full["full_refresh"] and full["mhb_version"] == incremental["mhb_version"]
    after_full = _queue(catalog)

    _assert_same_queue(after_incremental, after_full)
    ids = {(e.dataset, e.record_id) for e in after_full}
    assert not ids & {("prod", "p-50"), ("prod", "p-51"), ("prod", "p-170")}  # deleted
    assert not ids & {("prod", "p-30"), ("prod", "p-31")}  # logged with a label
    assert not ids & {("prod", r) for r in marked}  # marked labelled: out of the queue
    assert len(after_full) == 250 - 3 - 2 - len(marked) + 40
    refreshed = catalog.queue.state(KEY)
    assert state is not None and refreshed is not None
    assert refreshed.scored_count == state.scored_count
    assert refreshed.scored_seq == state.scored_seq
    assert set(full["seconds"]) == {"prepare", "read", "score", "write"}


def test_the_run_after_a_refit_uses_the_fitted_model_without_loading_it_again(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FileStore(str(tmp_path / "store"))
    logger = Logger(catalog, store)
    settings = Settings(recommend_exact_knn_max=100_000)
    logger.log("train", "training", [f"t-{i}" for i in range(120)])
    logger.log("prod", "production", [f"p-{i}" for i in range(30)])
    loads: list[str] = []
    real_load = scorer.load_model
    monkeypatch.setattr(scorer, "load_model",
                        lambda data: loads.append("load") or real_load(data))

    first = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert first["full_refresh"] and loads == []  # fitted in this run
    logger.log("prod", "production", [f"p-{i}" for i in range(30, 40)])
    second = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert second["scored"] == 10 and second["mhb_version"] == first["mhb_version"]
    assert loads == []  # kept from the fit: its scoring factors are derived once

    scorer._models.clear()  # another process: reads the stored model
    logger.log("prod", "production", ["p-40"])
    assert recommend_one(LabellingJob(catalog, store, settings, KEY))["scored"] == 1
    assert loads == ["load"]


def test_a_failed_page_write_fails_the_run_and_the_next_run_scores_those_records(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger, store, settings = scored_in_pages(catalog, tmp_path, monkeypatch)
    before = catalog.queue.state(KEY)
    logger.log("prod", "production", [f"p-{i}" for i in range(10, 40)])

    real_upsert = catalog.queue.upsert
    writes: list[int] = []

    def failing(key: str, rows: list, mhb_version: int | None, **kwargs: bool) -> int:
        writes.append(len(rows))
        if len(writes) == 2:
            raise RuntimeError("the catalog went away")
        return real_upsert(key, rows, mhb_version, **kwargs)

    monkeypatch.setattr(catalog.queue, "upsert", failing)
    with pytest.raises(RuntimeError, match="went away"):
        recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert len(writes) == 2  # no page written after the failed one
    after_failure = catalog.queue.state(KEY)
    assert before is not None and after_failure is not None
    assert after_failure.scored_seq == before.scored_seq  # the feed is not marked as scored
    assert after_failure.reference == before.reference
    assert after_failure.scored_count == before.scored_count + 7  # the page written

    monkeypatch.setattr(catalog.queue, "upsert", real_upsert)
    again = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert again["scored"] == 30 and not again["full_refresh"]
    assert catalog.queue.count(KEY) == 40
    state = catalog.queue.state(KEY)
    # The count follows the queue, the page written by the failed run included.
    assert state is not None and state.scored_count == 40


def test_after_a_failed_full_refresh_the_next_run_counts_the_queue_anew(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full refresh stages its pages beside the queue and swaps them in at its end:
    one that fails leaves the old queue as it was (no staging table behind), its count
    unknown, and the next run counts."""
    logger, store, settings = scored_in_pages(catalog, tmp_path, monkeypatch)
    before = [(e.record_id, e.score) for e in _queue(catalog)]
    logger.log("prod", "production", [f"p-{i}" for i in range(10, 40)])
    real_stage = catalog.queue.stage
    writes: list[int] = []

    def failing(key: str, rows: list, mhb_version: int | None) -> None:
        writes.append(len(rows))
        if len(writes) == 4:  # after pages 2 and 3 staged new records
            raise RuntimeError("the catalog went away")
        real_stage(key, rows, mhb_version)

    monkeypatch.setattr(catalog.queue, "stage", failing)
    with pytest.raises(RuntimeError, match="went away"):
        recommend_one(LabellingJob(catalog, store, settings, KEY), full=True)
    assert [(e.record_id, e.score) for e in _queue(catalog)] == before  # the old queue
    with catalog.db.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables"
                            " WHERE tablename LIKE 'recommendations_%'").fetchone() == (0,)

    monkeypatch.setattr(catalog.queue, "stage", real_stage)
    logger.log("prod", "production", [f"p-{i}" for i in range(40, 45)])
    again = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert not again["full_refresh"]
    state = catalog.queue.state(KEY)
    assert state is not None and state.scored_count == catalog.queue.count(KEY) == 45
