"""Pure parts of ``chroma.index``: configuration checks, input validation, distances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import chroma.index
from chroma.errors import InvalidInput
from chroma.index import IndexConfig, IndexedRecord, SearchFilter
from chroma.index.base import (
    as_matrix,
    check_k,
    check_key,
    check_mutable_fields,
    check_records,
    neighbour_from_payload,
    score_to_distance,
    stored_vector,
)


def test_public_surface_is_the_documented_list() -> None:
    assert sorted(chroma.index.__all__) == [
        "CollectionInfo",
        "Distance",
        "IndexConfig",
        "IndexedRecord",
        "Neighbour",
        "QueryEngine",
        "RecordRef",
        "SearchFilter",
        "StoredHit",
        "neighbour_from_payload",
        "open_query_engine",
    ]
    for name in chroma.index.__all__:
        assert hasattr(chroma.index, name)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "edge"}, "needs a path"),
        ({"backend": "remote"}, "needs a url"),
        ({"backend": "faiss", "path": Path("x")}, "'edge' or 'remote'"),
        ({"path": Path("x"), "hnsw_m": 1}, "HNSW"),
        ({"path": Path("x"), "hnsw_ef_search": 0}, "HNSW"),
        ({"path": Path("x"), "upsert_batch_size": 0}, "upsert_batch_size"),
        ({"path": Path("x"), "edge_segment_number": 0}, "edge_segment_number"),
        ({"path": Path("x"), "quantization": "int4"}, "'none' or 'int8'"),
        ({"path": Path("x"), "quantization_oversampling": 0.5}, "oversampling"),
        ({"path": Path("x"), "quantization_oversampling": 17.0}, "oversampling"),
    ],
)
def test_config_rejects_unusable_settings(fields: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        IndexConfig(**fields)


def test_config_defaults_are_the_shipped_hnsw_parameters() -> None:
    config = IndexConfig(path=Path("/data"))
    assert (config.backend, config.hnsw_m, config.hnsw_ef_construct, config.hnsw_ef_search) == (
        "edge",
        16,
        100,
        128,
    )
    with pytest.raises(AttributeError):
        config.hnsw_m = 32  # type: ignore[misc]


def test_as_matrix_accepts_one_row_and_converts_to_float32() -> None:
    matrix = as_matrix(np.arange(4, dtype=np.float64), 4)
    assert matrix.shape == (1, 4) and matrix.dtype == np.float32 and matrix.flags.c_contiguous


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.zeros((2, 3), np.float32), "dimension 3, the collection has dimension 4"),
        (np.array([[np.inf, 0, 0, 0]], np.float32), "NaN or infinite"),
        (np.zeros((1, 1, 4), np.float32), "1-D or 2-D"),
    ],
)
def test_as_matrix_rejects_bad_vectors(vectors: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        as_matrix(vectors, 4)


def test_records_must_match_vectors_and_carry_identity() -> None:
    vectors = np.zeros((1, 4), np.float32)
    with pytest.raises(InvalidInput, match="2 records but 1 vectors"):
        check_records([IndexedRecord("d", "a", "training")] * 2, vectors)
    with pytest.raises(InvalidInput, match="record_id"):
        check_records([IndexedRecord("d", "", "training")], vectors)
    with pytest.raises(InvalidInput, match="logged_at"):
        check_records([IndexedRecord("d", "a", "training", logged_at=float("nan"))], vectors)


@pytest.mark.parametrize("key", ["", "a/b", "..", "x" * 65, "key with space"])
def test_keys_that_are_not_safe_names_are_rejected(key: str) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)


def test_sha1_embedding_set_keys_are_accepted() -> None:
    assert check_key("0" * 40) == "0" * 40


@pytest.mark.parametrize("k", [0, -1, 1001, 2.5])
def test_k_outside_range_is_rejected(k: object) -> None:
    with pytest.raises(InvalidInput):
        check_k(k)  # type: ignore[arg-type]


def test_only_mutable_fields_may_be_set() -> None:
    assert check_mutable_fields({"tags": ("a", "b")}) == {"tags": ["a", "b"]}
    with pytest.raises(InvalidInput, match="record_id"):
        check_mutable_fields({"record_id": "x"})


def test_scores_become_distances_smaller_is_nearer() -> None:
    assert score_to_distance("cosine", 1.0000001) == 0.0
    assert score_to_distance("cosine", 0.25) == pytest.approx(0.75)
    assert score_to_distance("dot", 3.0) == -3.0
    assert score_to_distance("euclid", 2.0) == 2.0


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_edge_hits_become_the_same_distances_as_score_to_distance(distance: str) -> None:
    """``edge._stored_hits`` picks the metric once per call: same answer per hit."""
    from types import SimpleNamespace

    from chroma.index.edge import _stored_hits

    scores = [[1.0000001, 0.25, -0.5], [], [3.0]]
    results = [[SimpleNamespace(score=s, payload={"n": i} if i else None)
                for i, s in enumerate(row)] for row in scores]
    assert _stored_hits(distance, results) == [
        [(score_to_distance(distance, s), {"n": i} if i else {}) for i, s in enumerate(row)]
        for row in scores]


def test_stored_cosine_vectors_are_unit_length() -> None:
    np.testing.assert_allclose(stored_vector("cosine", [3.0, 4.0]), [0.6, 0.8])
    np.testing.assert_allclose(stored_vector("dot", [3.0, 4.0]), [3.0, 4.0])


def test_payload_holds_every_filterable_field() -> None:
    record = IndexedRecord("ds", "r1", "production", "s3://x", "cat", None, ("a",), 12.5)
    assert record.payload() == {
        "dataset": "ds",
        "record_id": "r1",
        "split": "production",
        "input_uri": "s3://x",
        "inference_class": "cat",
        "label_class": None,
        "tags": ["a"],
        "logged_at": 12.5,
    }


def test_empty_filter_is_recognised() -> None:
    assert SearchFilter().is_empty()
    assert not SearchFilter(split="training").is_empty()


def test_absent_optional_fields_are_not_stored_but_reported() -> None:
    record = IndexedRecord("ds", "r1", "training", logged_at=3.0)
    assert record.stored_payload() == {
        "dataset": "ds",
        "record_id": "r1",
        "split": "training",
        "logged_at": 3.0,
    }
    neighbour = neighbour_from_payload(record.stored_payload(), 0.5)
    assert neighbour.payload == record.payload()
    assert (neighbour.record_id, neighbour.input_uri, neighbour.distance) == ("r1", None, 0.5)


def test_the_default_hnsw_ef_grows_with_the_graph_and_an_asked_one_is_kept() -> None:
    from chroma.index.base import MAX_HNSW_EF, scaled_ef, search_ef

    assert [scaled_ef(128, n) for n in (0, 5_000, 100_000)] == [128, 128, 128]
    assert scaled_ef(128, 1_000_000) == 256  # recall@10 0.961 there, 0.910 at 128
    assert 128 < scaled_ef(128, 300_000) < 256
    assert scaled_ef(900, 100_000_000) == MAX_HNSW_EF
    assert search_ef(128, None, 10, 1_000_000) == 256
    assert search_ef(128, 64, 10, 1_000_000) == 64  # asked: as asked
    assert search_ef(128, None, 300, 0) == 300  # never below k


def test_the_quantization_setting_reaches_the_embedded_index_config_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pydantic

    from chroma.index.hosting import index_config
    from chroma.settings import Settings

    assert index_config(Settings(data_dir=tmp_path)).quantization == "none"
    monkeypatch.setenv("CHROMA_INDEX_QUANTIZATION", "int8")
    assert index_config(Settings(data_dir=tmp_path)).quantization == "int8"
    monkeypatch.setenv("CHROMA_INDEX_QUANTIZATION", "int4")
    with pytest.raises(pydantic.ValidationError, match="index_quantization"):
        Settings(data_dir=tmp_path)
