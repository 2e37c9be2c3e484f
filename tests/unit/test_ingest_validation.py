"""Pure validation of /log bodies: no servers."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from chroma.errors import InvalidInput, MalformedBody, PayloadTooLarge
from chroma.ingest import parse_json_log
from chroma.keys import embedding_set_key, point_id
from chroma.storage import RecordBatch

ES = {"model": "resnet50", "version": "3", "layer": "avgpool"}


def parse(body: object, max_records: int = 1000):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_json_log(raw, max_records=max_records)


def test_embedding_set_key_is_sha1_of_canonical_json() -> None:
    expected = hashlib.sha1(
        b'{"layer":"avgpool","model":"resnet50","version":"3"}'
    ).hexdigest()
    assert embedding_set_key(ES) == expected
    assert embedding_set_key(dict(reversed(list(ES.items())))) == expected


def test_point_ids_are_the_uuid5_of_dataset_and_record_id() -> None:
    # Existing indexes hold these ids: the fast form must give exactly uuid5's.
    import uuid

    from chroma.keys import _POINT_NAMESPACE

    for dataset, record_id in [("a", "1"), ("train", "r\u00e9\u4e2d"), ("", ""),
                               ("d" * 300, "x\x1fy"), *(("ds", f"r{i}") for i in range(500))]:
        expected = str(uuid.uuid5(_POINT_NAMESPACE, f"{dataset}\x1f{record_id}"))
        assert point_id(dataset, record_id) == expected


def test_point_ids_are_deterministic_and_distinct() -> None:
    assert point_id("a", "1") == point_id("a", "1")
    assert len({point_id("a", "1"), point_id("b", "1"), point_id("a", "2")}) == 3


def test_single_record_and_batch_forms_give_the_same_batch() -> None:
    single = parse({"embedding_set": ES, "dataset": "d", "split": "training",
                    "id": "x", "embedding": [1, 2]})
    batch = parse({"embedding_set": ES, "dataset": "d", "split": "training",
                   "records": [{"id": "x", "embedding": [1, 2]}]})
    for parsed in (single, batch):
        (only,) = parsed
        assert only.embedding_set_key == embedding_set_key(ES)
        assert only.records.ids == ["x"]
        assert only.records.embeddings.dtype == np.float32
        assert only.records.embeddings.tolist() == [[1.0, 2.0]]


def test_records_are_grouped_by_dataset_and_split() -> None:
    parsed = parse({"embedding_set": ES, "split": "production", "records": [
        {"embedding": [1.0], "dataset": "a"},
        {"embedding": [2.0], "dataset": "b", "split": "training"},
        {"embedding": [3.0], "dataset": "a"},
    ]})
    groups = {(b.dataset, b.split): b.records.embeddings.ravel().tolist() for b in parsed}
    assert groups == {("a", "production"): [1.0, 3.0], ("b", "training"): [2.0]}


def test_generated_ids_are_unique() -> None:
    (batch,) = parse({"embedding_set": ES, "dataset": "d", "split": "training",
                      "records": [{"embedding": [1.0]}] * 50})
    assert len(set(batch.records.ids)) == 50


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b"", MalformedBody, "empty"),
        (b"   ", MalformedBody, "empty"),
        (b'{"embedding": [1,', MalformedBody, "malformed JSON"),
        ({"embedding_set": ES, "dataset": "d", "split": "training", "embedding": []},
         InvalidInput, "embedding"),
        ({"embedding_set": ES, "dataset": "d", "split": "training", "embedding": [1e39]},
         InvalidInput, "non-finite"),
        ({"embedding_set": ES, "dataset": "d", "split": "nope", "embedding": [1]},
         InvalidInput, "split"),
        ({"embedding_set": {}, "dataset": "d", "split": "training", "embedding": [1]},
         InvalidInput, "embedding_set"),
        ({"embedding_set": {"a": [1]}, "dataset": "d", "split": "training",
          "embedding": [1]}, InvalidInput, "embedding_set"),
        ({"embedding_set": ES, "dataset": "a/b", "split": "training", "embedding": [1]},
         InvalidInput, "dataset"),
        ({"embedding_set": ES, "dataset": "d", "split": "training", "embedding": [1],
          "scores": {"a": "high"}}, InvalidInput, "scores"),
        ({"embedding_set": ES, "dataset": "d", "split": "training",
          "records": [{"embedding": [1], "embedding_set": {"other": 1}}, {"embedding": [2]}]},
         InvalidInput, "one embedding set"),
    ],
)
def test_bad_bodies_are_refused_with_a_message(body, error, fragment) -> None:
    with pytest.raises(error) as caught:
        parse(body)
    assert fragment in caught.value.message


def test_too_many_records_is_payload_too_large() -> None:
    body = {"embedding_set": ES, "dataset": "d", "split": "training",
            "records": [{"embedding": [1.0]}] * 11}
    with pytest.raises(PayloadTooLarge):
        parse(body, max_records=10)


def test_keep_last_per_id_keeps_the_last_occurrence() -> None:
    batch = RecordBatch(
        ids=["a", "b", "a"], embeddings=np.array([[1.0], [2.0], [3.0]], np.float32),
        input_uris=["1", "2", "3"], inference_classes=[None] * 3, label_classes=[None] * 3,
        scores_json=[None] * 3, tags=[[], [], []], metadata_json=[None] * 3,
    )
    kept = batch.keep_last_per_id()
    assert kept.ids == ["b", "a"] and kept.input_uris == ["2", "3"]
    assert kept.embeddings.ravel().tolist() == [2.0, 3.0]


# -- one set of rules for JSON and Arrow bodies (issue 12) -------------------------------

def _json_body(**fields: object) -> bytes:
    body: dict[str, object] = {"embedding_set": ES, "dataset": "d", "split": "production",
                               "embedding": [1.0, 2.0, 3.0]}
    body.update(fields)
    return json.dumps(body).encode()


def _arrow_body(matrix: np.ndarray | None = None, ids: list[str] | None = None,
                **columns: object) -> bytes:
    from chroma.client.client import arrow_stream

    matrix = np.ones((1, 3), np.float32) if matrix is None else matrix
    return arrow_stream(matrix, ids or [f"a{i}" for i in range(len(matrix))], columns,
                        embedding_set=ES, dataset="d", split="production")


def _arrow_raw_column(name: str, values: list[str]) -> bytes:
    """A body whose ``name`` column holds exactly ``values`` (JSON text kept as written)."""
    import pyarrow as pa

    table = pa.table({"embedding": pa.array([[1.0, 2.0, 3.0]] * len(values)),
                      name: pa.array(values, pa.string())})
    table = table.replace_schema_metadata({"chroma.embedding_set": json.dumps(ES),
                                           "chroma.dataset": "d", "chroma.split": "production"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _arrow(body: bytes, max_dimension: int = 4096):
    from chroma.ingest import parse_arrow_log

    return parse_arrow_log(body, query={}, max_records=1000, max_dimension=max_dimension)


NUL = "bad\x00text"
TEXT_FIELDS = ["id", "input_uri", "inference_class", "label_class"]


@pytest.mark.parametrize("field", [*TEXT_FIELDS, "tags", "embedding_set"])
def test_a_nul_character_is_refused_in_json(field: str) -> None:
    """PostgreSQL refuses NUL in text and jsonb: such a record must never reach a commit."""
    value: object = {"tags": [NUL], "embedding_set": {"model": NUL}}.get(field, NUL)
    with pytest.raises(InvalidInput) as refused:
        parse_json_log(_json_body(**{field: value}), max_records=10)
    assert field in refused.value.message


@pytest.mark.parametrize("field", [*TEXT_FIELDS, "tags"])
def test_a_nul_character_is_refused_in_arrow(field: str) -> None:
    if field == "id":
        body = _arrow_body(ids=[NUL])
    elif field == "tags":
        body = _arrow_body(tags=[[NUL]])
    else:
        body = _arrow_body(**{field: [NUL]})
    with pytest.raises(InvalidInput) as refused:
        _arrow(body)
    assert "NUL" in refused.value.message
    assert "record 0" in refused.value.message


def test_arrow_scores_must_map_classes_to_finite_numbers() -> None:
    """The JSON path's rule: {"a": "high"} would break every recommend of the set."""
    for bad in ['{"a": "high"}', '{"a": true}', '{"a": null}', '{"": 0.5}', '{"a": 1e300}']:
        with pytest.raises(InvalidInput) as refused:
            _arrow(_arrow_raw_column("scores", ['{"a": 0.5}', bad]))
        assert "record 1" in refused.value.message and "scores" in refused.value.message
    assert _arrow(_arrow_raw_column("scores", ['{"a": 0.25, "b": 1}']))


@pytest.mark.parametrize(("field", "length"), [
    ("inference_class", 100_000), ("label_class", 257), ("input_uri", 1_000_000),
])
def test_arrow_text_is_bounded_as_in_json(field: str, length: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        _arrow(_arrow_body(**{field: ["x" * length]}))
    assert field in refused.value.message and "characters" in refused.value.message
    with pytest.raises(InvalidInput):
        parse_json_log(_json_body(**{field: "x" * length}), max_records=10)


def test_the_dimension_limit_holds_for_both_bodies() -> None:
    with pytest.raises(InvalidInput) as refused:
        _arrow(_arrow_body(np.ones((1, 70_000), np.float32)))
    assert "70000" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        _arrow(_arrow_body(np.ones((1, 9), np.float32)), max_dimension=8)
    assert "limit is 8" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        parse_json_log(_json_body(embedding=[1.0] * 9), max_records=10, max_dimension=8)
    assert "limit is 8" in refused.value.message
    assert parse_json_log(_json_body(embedding=[1.0] * 8), max_records=10, max_dimension=8)


@pytest.mark.parametrize("fields", [
    {"model": 1e20}, {"model": -1e300}, {"model": 2**64}, {"model": "x" * 2000},
])
def test_embedding_set_numbers_and_text_are_bounded(fields: dict) -> None:
    """jsonb gives 1e20 back as an integer orjson cannot write: /embeddingsets broke."""
    with pytest.raises(InvalidInput):
        parse_json_log(_json_body(embedding_set=fields), max_records=10)
    with pytest.raises(InvalidInput):
        from chroma.client.client import arrow_stream

        _arrow(arrow_stream(np.ones((1, 3), np.float32), ["a"], {}, embedding_set=fields,
                            dataset="d", split="production"))


def test_metadata_must_survive_json_storage() -> None:
    for metadata in ({"a": 10**30}, {"a": [NUL]}, {NUL: 1}):
        with pytest.raises(InvalidInput):
            parse_json_log(_json_body(metadata=metadata), max_records=10)
    with pytest.raises(InvalidInput):
        _arrow(_arrow_raw_column("metadata", ['{"a": 1e30}']))


def test_arrow_strings_must_be_utf8() -> None:
    import pyarrow as pa

    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32)),
                                                 pa.py_buffer(b"\xff\xfe")])
    table = pa.table({"embedding": pa.array([[1.0, 2.0, 3.0]]), "label_class": bad})
    table = table.replace_schema_metadata({"chroma.embedding_set": json.dumps(ES),
                                           "chroma.dataset": "d", "chroma.split": "production"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(InvalidInput):
        _arrow(sink.getvalue().to_pybytes())


def test_check_json_document_bounds() -> None:
    from chroma.ingest.validation import check_json_document

    check_json_document({"a": [1, 2.5, "x", None, True, {"b": -(2**63)}]}, "params")
    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    for bad in ({"a": 2**63}, {"a": float("inf")}, {"a\x00": 1}, {"a": "\x00"}, {"a": 1e20},
                deep):
        with pytest.raises(InvalidInput):
            check_json_document(bad, "params")
