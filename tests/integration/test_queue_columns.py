"""The labelling queue a ``recommend`` run writes from columns (records read by COPY,
assessed as arrays, signals turned into JSON by PostgreSQL) holds exactly what the
per-record path gives: each record read as a ``StoredRecord``, assessed one by one with
``chroma.scoring.assess`` (as ``/log`` does), in the same order.

The expectations are computed here from the catalog's row objects and the per-record
assessments, not from the code under test. Real PostgreSQL and a real local store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog
from chroma.labelling import runs
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.labelling.scorer import signals_for
from chroma.labelling.training import parse_scores
from chroma.scoring import ScoringReference, assess
from chroma.settings import Settings
from chroma.storage import FileStore, read_columns

from .test_recommend_incremental import KEY, Logger

pytestmark = pytest.mark.integration

ONE_PAGE = runs.PAGE


@pytest.fixture
def catalog(own_catalog: Catalog) -> Catalog:
    return own_catalog


def _expected(catalog: Catalog, store: FileStore, settings: Settings) -> list[tuple]:
    """Every production record's queue row by the per-record path, best first (the
    queue's order: score, dataset id, record id, descending; labelled ones left out)."""
    job = LabellingJob(catalog, store, settings, KEY)
    state = catalog.queue.state(KEY)
    assert state is not None and state.reference is not None
    reference = ScoringReference.from_dict(state.reference)
    model = runs.fit_mhb_of(job).model  # the stored model, not fitted again
    source = job.training().neighbours(settings.recommend_approximate_knn_min)
    records = catalog.changes.records_since(KEY, 0, split="production")
    columns = read_columns(store, [(r.file_path, r.row_index) for r in records],
                           ["embedding", "scores"])
    signals, _ = signals_for(model, source, KEY, np.asarray(columns["embedding"]),
                             [r.inference_class for r in records],
                             [parse_scores(s) for s in columns["scores"]])
    dataset_ids = {r.dataset: catalog.get_dataset(r.dataset).id for r in records}
    rows = []
    for record, a in zip(records, assess(signals, reference), strict=True):
        if record.label_class is not None:
            continue
        score = a.score if np.isfinite(a.score) else 0.0
        rows.append((record.dataset, record.record_id, score,
                     _real(a.percentile if np.isfinite(a.percentile) else 0.0),
                     a.verdict, a.signals, a.raw_signals, record.input_uri,
                     record.inference_class, record.tags, record.logged_at,
                     dataset_ids[record.dataset]))
    rows.sort(key=lambda row: (row[2], row[11], row[1]), reverse=True)
    return rows


def _real(value: float) -> float:
    """``value`` as a ``real`` column gives it back (float32, in its shortest text)."""
    return float(str(np.float32(value)))


@pytest.mark.parametrize("page", [ONE_PAGE, 7], ids=["one-page", "pages-of-7"])
def test_the_queue_written_from_columns_is_the_per_record_queue(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int,
) -> None:
    monkeypatch.setattr(runs, "PAGE", page)
    store = FileStore(str(tmp_path / "store"))
    logger = Logger(catalog, store)
    settings = Settings(recommend_exact_knn_max=100_000)
    logger.log("train", "training", [f"t-{i}" for i in range(300)])
    logger.log("prod", "production", [f"p-{i}" for i in range(150)], far=15)
    logger.log("prod", "production", ["p-l0", "p-l1"], labels=["cat", "dog"])
    logger.log("night", "production", [f"n-{i}" for i in range(40)], far=4,
               tags=["night", 'q"uote', "comma,{brace}"])
    assert recommend_one(LabellingJob(catalog, store, settings, KEY))["scored"] == 192
    logger.log("prod", "production", [f"p-{i}" for i in range(150, 200)], far=5)
    assert recommend_one(LabellingJob(catalog, store, settings, KEY))["scored"] == 50

    queue = catalog.queue.page(KEY, limit=10_000)
    got = [(e.dataset, e.record_id, e.score, e.percentile, e.verdict, e.signals,
            e.raw_signals, e.input_uri, e.inference_class, e.tags, e.logged_at, e.dataset_id)
           for e in queue]
    want = _expected(catalog, store, settings)
    assert len(got) == len(want) == 240
    assert {"knn_distance", "mhb_predicted"} <= set(want[0][5])
    with_scores = [row for row in want if "entropy" in row[5]]
    assert 0 < len(with_scores) < len(want)  # some records logged no scores
    if page == ONE_PAGE:  # the run scored the same batches as _expected: bit for bit
        for got_row, want_row in zip(got, want, strict=True):
            assert got_row == want_row  # same order, same floats, same JSON
        return
    # Pages of 7: BLAS sums smaller batches in another order (last bits of the floats).
    want_by_ref = {row[:2]: row for row in want}
    assert sorted(row[:2] for row in got) == sorted(want_by_ref)
    for row in got:
        expected = want_by_ref[row[:2]]
        assert row[2] == pytest.approx(expected[2], rel=1e-6)
        assert row[3] == pytest.approx(expected[3], rel=1e-5)
        assert row[4] == expected[4]
        for got_signals, want_signals in ((row[5], expected[5]), (row[6], expected[6])):
            assert got_signals.keys() == want_signals.keys()
            assert got_signals == pytest.approx(want_signals, rel=1e-5, abs=1e-7)
        assert row[7:] == expected[7:]
