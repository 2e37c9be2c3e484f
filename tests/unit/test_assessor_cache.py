"""The assessor's cache of MHB models is bounded by bytes (CHROMA_ASSESSOR_CACHE_BYTES).

The catalog and store here are stand-ins that answer what the assessor asks (a ready set,
its model's bytes) and count the reads; the models, references and scoring are real."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chroma.labelling import Assessor
from chroma.labelling.assessor import ByteLRU
from chroma.scoring import compute_signals, dump_model, fit_mhb, fit_reference, score_mhb
from chroma.settings import Settings
from chroma.storage import RecordBatch

DIMENSION = 32


def _training(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, 300)]
    centres = {"a": 0.0, "b": 3.0, "c": -3.0}
    data = np.array([centres[x] for x in labels])[:, None] + rng.normal(size=(300, DIMENSION))
    return data.astype(np.float32), labels


class _Store:
    """Artifact bytes by path; counts reads."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads: Counter[str] = Counter()

    def read_bytes(self, path: str) -> bytes:
        self.reads[path] += 1
        return self.blobs[path]


class _Queue:
    """Every set is ready with MHB version 1 and its stored reference."""

    def __init__(self) -> None:
        self.references: dict[str, dict] = {}

    def state(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(reference=self.references[key], mhb_version=1)

    def latest_mhb(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(version=1, path=f"{key}.mhb")

    def training_files(self, key: str) -> list[tuple[str, int]]:
        return [(f"{key}-file", 300)]


@pytest.fixture()
def world() -> tuple[SimpleNamespace, _Store, int]:
    """Five ready sets; returns (catalog, store, the in-memory bytes of one model)."""
    queue, store = _Queue(), _Store()
    sizes = []
    for k in range(5):
        data, labels = _training(k)
        model = fit_mhb(data, labels)
        store.blobs[f"set{k}.mhb"] = dump_model(model)
        queue.references[f"set{k}"] = fit_reference(
            compute_signals(score_mhb(model, data, labels))).to_dict()
        sizes.append(model.memory_bytes())
    return SimpleNamespace(queue=queue), store, max(sizes)


def _assessor(tmp_path: Path, catalog, store, cache_bytes: int) -> Assessor:
    settings = Settings(data_dir=tmp_path, assessor_cache_bytes=cache_bytes,
                        recommend_exact_knn_max=0)
    assessor = Assessor(settings, catalog, store)
    assessor.recheck_s = 0.0  # ask the catalog on every call: the cache alone decides reads
    assessor._source, assessor._source_opened = None, True  # no query engine in a unit test
    return assessor


def _batch() -> RecordBatch:
    data, labels = _training(99)
    return RecordBatch(ids=["p1", "p2"], embeddings=data[:2], input_uris=[None, None],
                       inference_classes=list(labels[:2]), label_classes=[None, None],
                       scores_json=[None, None], tags=[[], []], metadata_json=[None, None],
                       dataset="prod")


def test_cache_keeps_at_most_its_bytes_least_recently_used_out(tmp_path, world) -> None:
    catalog, store, model_bytes = world
    assessor = _assessor(tmp_path, catalog, store, cache_bytes=int(2.5 * model_bytes))
    for k in range(5):
        assert assessor.assess(f"set{k}", _batch()) is not None
    assert assessor.cached_bytes <= int(2.5 * model_bytes)
    assert all(store.reads[f"set{k}.mhb"] == 1 for k in range(5))
    assessor.assess("set4", _batch())  # recently used: still cached
    assert store.reads["set4.mhb"] == 1
    assessor.assess("set0", _batch())  # evicted long ago: read again
    assert store.reads["set0.mhb"] == 2


def test_a_model_over_the_bound_is_not_assessed_nor_read_again(tmp_path, world) -> None:
    catalog, store, model_bytes = world
    assessor = _assessor(tmp_path, catalog, store, cache_bytes=model_bytes // 2)
    for _ in range(3):
        assert assessor.assess("set0", _batch()) is None
    assert store.reads["set0.mhb"] == 1
    assert assessor.cached_bytes == 0


def test_byte_lru() -> None:
    cache: ByteLRU[str] = ByteLRU(10)
    assert cache.put("a", "A", 4) and cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # a is now the most recent
    assert cache.put("c", "C", 4)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == "A" and cache.total == 8
    assert not cache.put("huge", "H", 11) and cache.get("huge") is None
    assert cache.put("a", "A2", 6) and cache.total == 10 and len(cache) == 2


def test_a_set_found_unready_is_asked_again_soon(tmp_path, world, monkeypatch) -> None:
    """The first log after the recommender became ready carries its assessment: a 'not
    ready' answer is reused for a fraction of a second, not for the ready answer's 2 s
    (the README's curl right after the quickstart answered 202 without one)."""
    catalog, store, model_bytes = world
    assessor = _assessor(tmp_path, catalog, store, cache_bytes=10 * model_bytes)
    assessor.recheck_s = 2.0
    now = [1000.0]
    monkeypatch.setattr("chroma.labelling.assessor.time.monotonic", lambda: now[0])
    ready_state = catalog.queue.state
    monkeypatch.setattr(catalog.queue, "state", lambda key: None)
    assert assessor.assess("set0", _batch()) is None
    assert assessor.known_unready("set0")
    monkeypatch.setattr(catalog.queue, "state", ready_state)  # the recommend run ends
    now[0] += 0.5
    assert not assessor.known_unready("set0")
    assert assessor.assess("set0", _batch()) is not None
