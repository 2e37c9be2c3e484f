"""End to end through HTTP: log training and production, the implicit operations run,
the labelling queue puts the injected out-of-distribution records first, and /log
assesses new production records once the recommender is ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import _fresh_database, free_port
from tests.integration.system import System, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ES = {"model": "e2e-recommend", "version": "1"}
DIM = 16
CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module", params=["exact", "index"])
def system(
    request: pytest.FixtureRequest, postgres_admin_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """The whole system, once for each way the recommender finds nearest training
    records (in memory, or through the index host), each with its own database."""
    tmp_path = tmp_path_factory.mktemp("recsys")
    with _fresh_database(postgres_admin_dsn) as database_url:
        env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "5",
               "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "0",
               "CHROMA_RECOMMEND_EXACT_KNN_MAX": "100000" if request.param == "exact" else "0"}
        chroma = System(tmp_path / "data", env, tmp_path / "run.log", free_port())
        chroma.start()
        yield chroma
        chroma.stop()


def _knn_mode(system: System) -> str:
    return "index" if system.env["CHROMA_RECOMMEND_EXACT_KNN_MAX"] == "0" else "exact"


def _probabilities(rng: np.random.Generator, n: int, confident: bool) -> list[dict]:
    out = []
    for _ in range(n):
        logits = rng.normal(size=3) * (4.0 if confident else 0.3)
        p = np.exp(logits) / np.exp(logits).sum()
        out.append({c: float(v) for c, v in zip(CLASSES, p, strict=True)})
    return out


def _wait_for_recommend(system: System, after_id: int = 0) -> dict:
    def done() -> bool:
        ops = httpx.get(f"{system.url}/api/v1/operations",
                        params={"kind": "recommend"}).json()["data"]
        mine = [op for op in ops if op["id"] > after_id]
        return bool(mine) and all(op["state"] in ("succeeded", "failed") for op in mine)
    wait_for(done, 180, "the implicit recommend operation")
    ops = httpx.get(f"{system.url}/api/v1/operations", params={"kind": "recommend"}).json()
    latest = ops["data"][0]
    assert latest["state"] == "succeeded", latest
    return latest


def test_out_of_distribution_records_rank_first_and_logs_are_assessed(system: System) -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, DIM)) * 6
    labels = rng.integers(0, 3, size=900)
    train = centres[labels] + rng.normal(size=(900, DIM))
    normal_labels = rng.integers(0, 3, size=300)
    normal = centres[normal_labels] + rng.normal(size=(300, DIM))
    outliers = rng.normal(size=(20, DIM)) * 1.5 + 15.0  # far from every class
    with Client(system.url, progress=False) as client:
        client.log_many(train, embedding_set=ES, dataset="e2e-train", split="training",
                        label_classes=[CLASSES[c] for c in labels],
                        scores=_probabilities(rng, 900, confident=True))
        production = np.vstack([normal, outliers])
        ids = [f"n{i}" for i in range(300)] + [f"ood{i}" for i in range(20)]
        predicted = [CLASSES[c] for c in normal_labels] + ["cat"] * 20
        scores = _probabilities(rng, 300, confident=True) + _probabilities(rng, 20, False)
        client.log_many(production, embedding_set=ES, dataset="e2e-prod", split="production",
                        ids=ids, inference_classes=predicted, scores=scores)
        recommend = _wait_for_recommend(system)
        modes = {r["knn"] for r in recommend["result"]["embedding_sets"].values()}
        assert modes == {_knn_mode(system)}

        page = client.recommendations(ES, limit=20)
        top = [item["id"] for item in page["items"]]
        assert sum(i.startswith("ood") for i in top) >= 18, top
        first = page["items"][0]
        assert first["signals"] and 0.0 <= first["score"] <= 1.0 and first["verdict"] == "label"
        assert "knn_distance" in first["signals"]
        assert page["total"] == 320

        # Paging with the cursor visits every record once, best first.
        seen, cursor, scores_seen = [], None, []
        while True:
            chunk = client.recommendations(ES, limit=64, cursor=cursor)
            seen += [i["id"] for i in chunk["items"]]
            scores_seen += [i["score"] for i in chunk["items"]]
            cursor = chunk["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)
        assert scores_seen == sorted(scores_seen, reverse=True)

        # A diverse page is not one cluster: still mostly outliers, no duplicates.
        diverse = client.recommendations(ES, limit=10, diverse=True)
        assert len({i["id"] for i in diverse["items"]}) == 10

        # Assessment on /log: once the API notices the recommender is ready (it re-checks
        # every few seconds), 201 with a verdict per production record.
        fresh = {
            "embedding_set": ES, "dataset": "e2e-prod", "split": "production",
            "records": [
                {"id": "fresh-ood", "embedding": (rng.normal(size=DIM) + 15).tolist(),
                 "inference_class": "dog"},
                {"id": "fresh-ok", "embedding": (centres[1] + rng.normal(size=DIM)).tolist(),
                 "inference_class": "dog", "scores": {"cat": 0.01, "dog": 0.98, "fox": 0.01}},
            ]}
        answers: list[httpx.Response] = []

        def assessed() -> bool:
            answers.append(httpx.post(f"{system.url}/api/v1/log", json=fresh))
            return answers[-1].status_code == 201
        wait_for(assessed, 10, "an assessed log")
        answer = answers[-1]
        assert {a.status_code for a in answers} <= {201, 202}
        verdicts = {a["id"]: a["verdict"] for a in answer.json()["assessments"]}
        assert verdicts == {"fresh-ood": "label", "fresh-ok": "ok"}
        for assessment in answer.json()["assessments"]:  # found like the reference's
            nearest = assessment["nearest_training"]
            assert nearest and {n["dataset"] for n in nearest} == {"e2e-train"}
            distances = [n["distance"] for n in nearest]
            assert distances == sorted(distances)

        # Labelled records leave the queue.
        assert sorted(client.mark_labelled("e2e-prod", top[:3])) == sorted(top[:3])
        after = [i["id"] for i in client.recommendations(ES, limit=20)["items"]]
        assert not set(top[:3]) & set(after)


def test_unknown_embedding_set_is_404(system: System) -> None:
    answer = httpx.get(f"{system.url}/api/v1/recommendations",
                       params={"embedding_set_key": embedding_set_key({"no": "such"})})
    assert answer.status_code == 404


def test_cli_prints_the_queue(system: System, tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import CHROMA_BIN

    done = subprocess.run(
        [CHROMA_BIN, "recommend", "--embedding-set", embedding_set_key(ES), "--top", "5",
         "--url", system.url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "records in the queue" in done.stdout and "ood" in done.stdout
