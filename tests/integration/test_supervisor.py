"""``chroma run`` as a supervisor, with real processes: restarts, cancel, resume, lock.

Each test starts ``chroma run`` (API + worker processes) on its own database and data
directory, with a short operation lease so that a dead worker is noticed quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chroma.keys import embedding_set_key
from tests.conftest import CHROMA_BIN, free_port
from tests.integration.system import System, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One system for the module (starting five processes is slow); tests leave it running."""
    tmp_path = tmp_path_factory.mktemp("system")
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "3",
           "CHROMA_WORKER_POLL_S": "0.2"}
    chroma = System(tmp_path / "data", env, tmp_path / "run.log", free_port())
    chroma.start()
    yield chroma
    chroma.stop()


def runs(system: System, op_id: int) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(system.env["CHROMA_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT owner, started_at, finished_at, outcome FROM operation_runs"
            " WHERE operation_id = %s ORDER BY id", (op_id,)).fetchall()
    return [dict(zip(("owner", "started_at", "finished_at", "outcome"), r, strict=True))
            for r in rows]


def test_status_shows_every_component_up(system: System) -> None:
    status = system.status()
    assert {c["name"] for c in status["components"]} == {
        "api", "indexer", "mhb", "recommender", "compactor"}
    for component in status["components"]:
        assert component["pid"] and component["heartbeat_age_s"] < 10
        assert component["uptime_s"] is not None
    assert status["mode"] == "embedded"


def test_a_killed_worker_is_restarted_and_its_operation_completes_once(system: System) -> None:
    op = system.start_operation("sleep", seconds=4)
    wait_for(lambda: system.operation(op["id"])["state"] == "running", 20, "running")
    victim = system.component("compactor")
    restarts_before = victim["restarts"]
    os.kill(victim["pid"], signal.SIGKILL)

    # /status notices the stop, then the restart, within a few seconds.
    wait_for(lambda: system.component("compactor")["state"] in ("down", "starting"), 10,
             "compactor reported down")
    wait_for(lambda: system.component("compactor")["state"] == "up"
             and system.component("compactor")["pid"] != victim["pid"], 30, "compactor back")
    assert system.component("compactor")["restarts"] == restarts_before + 1

    wait_for(lambda: system.operation(op["id"])["state"] == "succeeded", 60, "completion")
    done = system.operation(op["id"])
    assert done["attempts"] == 2 and done["result"]["attempt"] == 2
    attempts = runs(system, op["id"])
    assert [r["outcome"] for r in attempts] == ["lost", "succeeded"]
    # Never run twice at once: the second attempt began after the first one ended.
    assert attempts[1]["started_at"] >= attempts[0]["started_at"]
    assert attempts[0]["owner"] != attempts[1]["owner"]


def test_cancel_a_running_operation(system: System) -> None:
    op = system.start_operation("sleep", seconds=30)
    wait_for(lambda: system.operation(op["id"])["state"] == "running", 20, "running")
    answer = httpx.post(f"{system.url}/api/v1/operations/{op['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["cancel_requested"]
    wait_for(lambda: system.operation(op["id"])["state"] == "cancelled", 15, "cancelled")
    assert system.operation(op["id"])["progress"] < 1.0


def test_stop_and_restart_mid_operation_resumes_and_completes_once(system: System) -> None:
    op = system.start_operation("sleep", seconds=5)
    wait_for(lambda: system.operation(op["id"])["progress"] > 0.1, 20, "progress")
    assert system.stop() == 0
    system.start()
    wait_for(lambda: system.operation(op["id"])["state"] == "succeeded", 60, "completion")
    outcomes = [r["outcome"] for r in runs(system, op["id"])]
    assert outcomes == ["interrupted", "succeeded"]


def test_a_second_chroma_run_on_the_same_directory_is_refused(system: System) -> None:
    second = subprocess.run(
        [CHROMA_BIN, "run", "--port", str(free_port()), "--data-dir", str(system.data_dir)],
        env={**os.environ, **system.env}, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "in use by chroma run" in second.stderr
    assert system.component("api")["state"] == "up"


def test_production_logs_queue_one_index_operation(system: System) -> None:
    es = {"model": "trigger"}
    for i in range(20):
        answer = httpx.post(f"{system.url}/api/v1/log", json={
            "embedding_set": es, "dataset": "prod", "split": "production",
            "id": str(i), "embedding": [1.0, float(i)]})
        assert answer.status_code == 202
    triggered = httpx.get(f"{system.url}/api/v1/operations",
                          params={"kind": "index"}).json()["data"]
    # A run that had started when a later record came is followed by a rerun of itself.
    assert triggered and all(op["requested_by"] == "trigger"
                             or op["requested_by"].startswith("rerun of #")
                             for op in triggered)
    active = [op for op in triggered if op["state"] in ("queued", "running")]
    assert len(active) <= 1


def test_metrics_in_prometheus_format(system: System) -> None:
    httpx.post(f"{system.url}/api/v1/log", json={
        "embedding_set": {"model": "metrics"}, "dataset": "m", "split": "training",
        "embedding": [1.0]})
    system.start_operation("sleep", seconds=0.1)
    text = httpx.get(f"{system.url}/metrics").text
    assert 'chroma_http_requests_total{method="POST",route="/api/v1/log",status="201"}' in text
    assert 'chroma_records_ingested_total{split="training"} 1.0' in text
    assert "chroma_http_request_duration_seconds_bucket" in text
    assert "chroma_commit_request_records_count" in text
    assert 'chroma_operations{kind="sleep"' in text
    key = embedding_set_key({"model": "metrics"})
    assert f'chroma_change_feed_head_seq{{embedding_set="{key}"}}' in text
    assert f'chroma_change_feed_lag_changes{{consumer="index",embedding_set="{key}"}}' in text
