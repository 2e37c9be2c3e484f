"""The running server answers each documented operation with a documented status code."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

CONTRACT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "chroma-api.yaml").read_text()
)


def test_each_operation_answers_with_a_documented_code(chroma_server, uid: str) -> None:
    url = chroma_server.url
    es = {"model": "contract", "test": uid}
    httpx.post(f"{url}/api/v1/log", json={"embedding_set": es, "dataset": f"c-{uid}",
                                          "split": "training", "id": "a", "embedding": [1.0]})
    filled = {"{name}": f"c-{uid}", "{key}": "0" * 40, "{record_id}": "a"}
    bodies = {"/api/v1/log": {"embedding_set": es, "dataset": f"c-{uid}", "split": "training",
                              "embedding": [2.0]},
              "/api/v1/datasets/{name}/records/delete": {"ids": ["zz"]},
              "/api/v1/datasets/{name}/records/tags": {"ids": ["a"], "add": ["t"]}}
    checked = 0
    for path, item in CONTRACT["paths"].items():
        concrete = path
        for placeholder, value in filled.items():
            concrete = concrete.replace(placeholder, value)
        for method, operation in item.items():
            answer = httpx.request(method.upper(), f"{url}{concrete}", json=bodies.get(path))
            assert str(answer.status_code) in operation["responses"], (
                f"{method.upper()} {path} answered {answer.status_code}: {answer.text[:200]}"
            )
            checked += 1
    assert checked == sum(len(item) for item in CONTRACT["paths"].values())
