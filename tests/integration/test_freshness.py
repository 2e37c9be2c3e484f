"""Freshness (DESIGN.md section 12; issue 12 defect 1), through ``chroma run`` over HTTP.

A minute of production logging at a steady rate with random pauses (bursts within the
trigger's debounce period, and silences longer than it), then no traffic at all: every
record must reach the index and the labelling queue. The bound (``CATCH_UP_S`` after the
last write) is generous on purpose: this test asserts coverage, not speed; the lag
figures come from ``bench/freshness.py``.

The watermark check that makes good a trigger lost with a crashed process is switched
off here (``CHROMA_FRESHNESS_CHECK_S``), so the test proves the triggers themselves lose
no wake-up. Before the fix, records committed within the debounce period of the last
trigger, or while the operation that had read the feed was still running, stayed out
of the queue for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import _fresh_database, free_port
from tests.integration.system import System, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ES = {"model": "freshness", "version": "1"}
DIM = 16
CLASSES = tuple(f"c{i}" for i in range(10))
LOGGING_S = 60.0
CATCH_UP_S = 120.0


@pytest.fixture
def system(postgres_admin_dsn: str, tmp_path: Path) -> Iterator[System]:
    with _fresh_database(postgres_admin_dsn) as database_url:
        env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_WORKER_POLL_S": "0.2",
               "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "1.0",
               "CHROMA_FRESHNESS_CHECK_S": "3600"}
        chroma = System(tmp_path / "data", env, tmp_path / "run.log", free_port())
        # Logging needs only the API; workers that start late just find a longer queue.
        try:
            chroma.start(components=("api",))
        except AssertionError:  # a loaded machine: give it longer, this is not timed
            wait_for(lambda: chroma._up(("api",)), 240, "the API up")
        yield chroma
        chroma.stop()


def _log_production(client: Client, rng: np.random.Generator,
                    centres: np.ndarray) -> list[str]:
    """Batches of 1-100 records for ``LOGGING_S``, mostly 0.05-0.4 s apart (within the
    debounce period), sometimes after a pause of 1-4 s (past it)."""
    ids: list[str] = []
    deadline = time.monotonic() + LOGGING_S
    batch = 0
    while time.monotonic() < deadline:
        n = int(rng.integers(1, 101))
        labels = rng.integers(0, len(CLASSES), size=n)
        vectors = centres[labels] + rng.normal(size=(n, DIM))
        batch_ids = [f"p{batch}-{i}" for i in range(n)]
        client.log_many(vectors, embedding_set=ES, dataset="prod", split="production",
                        ids=batch_ids, inference_classes=[CLASSES[c] for c in labels])
        ids += batch_ids
        batch += 1
        time.sleep(float(rng.uniform(1.0, 4.0)) if rng.random() < 0.15
                   else float(rng.uniform(0.05, 0.4)))
    return ids


def test_every_record_reaches_the_index_and_the_queue_without_further_traffic(
        system: System) -> None:
    rng = np.random.default_rng(12)
    centres = rng.normal(size=(len(CLASSES), DIM)) * 5
    labels = rng.integers(0, len(CLASSES), size=2000)
    key = embedding_set_key(ES)
    with Client(system.url, progress=False) as client:
        client.log_many(centres[labels] + rng.normal(size=(2000, DIM)), embedding_set=ES,
                        dataset="train", split="training",
                        label_classes=[CLASSES[c] for c in labels])
        production = _log_production(client, rng, centres)

        def caught_up() -> bool:
            status = system.index_status(key)
            fresh = status is not None and not status["stale"]
            return fresh and client.recommendations(ES, limit=1)["total"] == len(production)

        try:
            wait_for(caught_up, CATCH_UP_S, "the index and the queue to cover every change")
        except AssertionError as exc:
            active = [(op["id"], op["kind"], op["state"], op["message"])
                      for op in system.get("/api/v1/operations")["data"]
                      if op["state"] in ("queued", "running")]
            queued = client.recommendations(ES, limit=1)["total"]
            raise AssertionError(
                f"{exc}: {queued} of {len(production)} production records in the queue;"
                f" status {system.index_status(key)}; active operations {active}") from None
        status = system.index_status(key)
        assert status is not None
        assert status["indexed_count"] == 2000 + len(production)
        assert status["indexed_seq"] == status["latest_seq"]
        wait_for(lambda: system.index_status(key)["queue_lag"] == 0,  # type: ignore[index]
                 CATCH_UP_S, "the queue's watermark")
        queued: list[str] = []
        cursor = None
        while True:
            page = client.recommendations(ES, limit=1000, cursor=cursor)
            queued += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert sorted(queued) == sorted(production)
