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
