"""Every acknowledged write survives a crash: SIGKILL the server while clients stream logs.

After a restart, every id that got a 2xx is readable with the embedding that was sent,
nothing is duplicated, and nothing that was never sent appears.
"""

from __future__ import annotations

import random
import threading
import time

import httpx
import numpy as np
import pytest

from chroma.client import Client
from tests.conftest import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIMENSION = 8


def vector_for(record_id: str) -> list[float]:
    """A deterministic embedding per id, so that what was stored can be checked."""
    seed = int.from_bytes(record_id.encode()[-8:].rjust(8, b"\0"), "little") % (2**32)
    return np.random.default_rng(seed).normal(size=DIMENSION).astype(np.float32).tolist()


@pytest.mark.parametrize(
    ("storage_env", "round_"),
    [("local", 0), ("local", 1), ("local", 2), ("s3", 0)],
    indirect=["storage_env"],
)
def test_sigkill_while_logging_loses_no_acknowledged_record(
    server_env: dict, tmp_path, uid: str, round_: int
) -> None:
    server = ServerProcess(env=server_env, log_path=tmp_path / "server.log")
    server.start()
    dataset = f"crash-{uid}"
    es = {"model": "crash-test", "test": uid}
    acked: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                # Re-send some earlier ids: upserts must not become duplicates.
                ids = [f"w{worker}-{n + j}" for j in range(rng.randint(1, 20))]
                if n > 10 and rng.random() < 0.2:
                    ids.append(f"w{worker}-{rng.randrange(n)}")
                n += 20
                body = {
                    "embedding_set": es,
                    "dataset": dataset,
                    "split": "production",
                    "records": [{"id": i, "embedding": vector_for(i)} for i in ids],
                }
                with lock:
                    sent.update(ids)
                try:
                    answer = http.post("/api/v1/log", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code in (201, 202):
                    with lock:
                        acked.update(answer.json()["ids"])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    # Kill at a random moment once writes flow (the writers need a moment to start).
    deadline = time.monotonic() + 60
    while len(acked) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.1, 1.5))
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    assert acked, "no write was acknowledged before the kill; the test proved nothing"

    server.start()
    try:
        with Client(server.url, progress=False) as client:
            stored = list(client.iter_records(dataset, page_size=2000, include_embeddings=True))
            count = client.dataset(dataset)["record_count"]
    finally:
        server.stop()
    stored_ids = [r["id"] for r in stored]
    assert len(stored_ids) == len(set(stored_ids)), "a record is duplicated"
    assert count == len(stored_ids)
    missing = acked - set(stored_ids)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    assert set(stored_ids) <= sent, "records that were never sent appeared"
    for record in stored:
        assert np.allclose(record["embedding"], vector_for(record["id"]))
