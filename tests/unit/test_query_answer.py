"""The query answer built straight from the index's hits (no catalog check): the same
JSON as the contract's ``Neighbour`` (``logged_at`` as ISO 8601, as ``isoformat`` writes
it), at most ``k`` a row."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from chroma.api.models.query import QueryResponse
from chroma.api.routers.query import _answer_from_index
from chroma.search.neighbours import Found


def test_an_answer_from_the_index_is_the_contract_with_iso_timestamps() -> None:
    stamps = [1_700_000_000.0, 1_700_000_000.123456, 0.0]
    # As the index stores them: absent optional fields left out (no input_uri, label).
    rows = [[(0.1 * i, {"dataset": "d", "record_id": f"r{i}", "split": "production",
                        "tags": ["x"], "inference_class": "cat", "logged_at": stamp})
             for i, stamp in enumerate(stamps)]]
    body = orjson.loads(_answer_from_index("k" * 40, "cosine", Found(rows, False), 2).body)
    QueryResponse.model_validate(body)
    neighbours = body["results"][0]["neighbours"]
    assert [n["id"] for n in neighbours] == ["r0", "r1"]  # k = 2
    assert [n["payload"]["logged_at"] for n in neighbours] == [
        datetime.fromtimestamp(s, UTC).isoformat() for s in stamps[:2]]
    assert neighbours[1] == {
        "id": "r1", "dataset": "d", "split": "production", "distance": 0.1,
        "input_uri": None, "payload": {"inference_class": "cat", "label_class": None,
                                       "tags": ["x"],
                                       "logged_at": "2023-11-14T22:13:20.123456+00:00"}}
