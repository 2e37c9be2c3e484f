"""The local store cleans up after failed writes and says when it cannot take writes.

* A failed write leaves no ``.tmp`` file; one left by a crash is removed by the sweep
  unless its target is claimed (a write in flight).
* ``FileStore.check`` (behind ``GET /ready``) fails on a read-only store folder or a full
  disk, with the reason.

Read-only is made with ``chmod`` (or, as root, whom permissions do not stop,
``chattr +i``); the test skips, saying why, where neither can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chroma.catalog import Catalog, Database, apply_migrations
from chroma.errors import Unavailable
from chroma.ingest.compaction import sweep
from chroma.storage import FileStore
from tests.conftest import ServerProcess

pytestmark = pytest.mark.integration

WAIT_S = 60.0


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` refuses new files while inside (even to root)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root (permissions do not apply) and chattr is missing")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root and chattr +i is refused here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


# -- temporary files --------------------------------------------------------------------


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    (tmp_path / "set" / "part-1.parquet").mkdir(parents=True)  # the rename will fail
    (tmp_path / "set" / "part-1.parquet" / "x").write_bytes(b"")
    with pytest.raises(Unavailable, match=r"part-1\.parquet"):
        store.write_bytes("set/part-1.parquet", b"PAR1")
    assert temporaries(tmp_path) == []


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    apply_migrations(database_url)
    db = Database(database_url)
    db.open()
    yield Catalog(db)
    db.close()


def test_the_sweep_removes_stale_temporaries_but_not_a_write_in_flight(
        catalog: Catalog, tmp_path: Path, uid: str) -> None:
    store = FileStore(str(tmp_path))
    folder = tmp_path / uid
    folder.mkdir()

    def leftover(target: str) -> Path:
        path = folder / f"{target}.{uuid.uuid4().hex}.tmp"
        path.write_bytes(b"half a parquet file")
        return path

    crashed = leftover("part-crashed.parquet")
    in_flight = leftover("part-in-flight.parquet")
    catalog.claim_files([f"{uid}/part-in-flight.parquet"])  # its writer is still at it
    other = leftover("model.mhb")  # not a record file: its writer does not claim

    swept = sweep(catalog, store, grace_s=0)

    assert swept.temporary_deleted == 1
    assert temporaries(folder) == sorted([in_flight, other])
    assert not crashed.exists()


# -- readiness ----------------------------------------------------------------------------


def test_the_store_check_fails_on_a_read_only_folder(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    with read_only(tmp_path), pytest.raises(Unavailable, match="not writable"):
        store.check()


def test_the_store_check_fails_when_the_disk_is_full(tmp_path: Path) -> None:
    # "Full" is free space below the store's threshold; a threshold above any disk's
    # size makes this disk full without filling it.
    store = FileStore(str(tmp_path), min_free_bytes=2**62)
    with pytest.raises(Unavailable, match="full"):
        store.check()
    FileStore(str(tmp_path)).check()  # the default threshold: this disk is fine


def test_ready_answers_503_and_logs_the_reason_while_the_store_is_read_only(
        database_url: str, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    server = ServerProcess(
        env={"CHROMA_DATABASE_URL": database_url, "CHROMA_STORAGE_URL": str(store_dir)},
        log_path=tmp_path / "server.log")
    server.start()  # returns once /ready said 200
    try:
        with read_only(store_dir):
            answer = wait_for_ready_status(server, 503)
            assert answer["checks"]["catalog"] == "ok"
            # The reason goes to the server log, not the answer (no paths leave the server).
            assert answer["checks"]["store"].startswith("unavailable")
        wait_for_ready_status(server, 200)
    finally:
        server.stop()
    assert "not writable" in server.log_path.read_text()


def wait_for_ready_status(server: ServerProcess, status: int) -> dict:
    """Poll ``/ready`` until it answers ``status`` (its store probe is cached a moment)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = httpx.get(f"{server.url}/ready", timeout=10)
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            return answer.json()
        time.sleep(0.2)
