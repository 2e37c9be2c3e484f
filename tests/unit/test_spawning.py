"""``chroma run``'s children without ``multiprocessing``'s spawn (chroma.control.spawning):
the same interface and exit codes, and none of the two costs: no resource-tracker process
beside the children (~13 MiB RSS), no second run of the parent's main module (the
``chroma`` console script, i.e. the whole CLI) in each child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chroma.control.spawning import ChildProcess, Spawner
from chroma.lifetime import PARENT_PID_ENV


def record_child(path: Path) -> None:
    """A child's target: what it sees of its start."""
    import multiprocessing

    path.write_text(" ".join([multiprocessing.current_process().name,
                              os.environ.get(PARENT_PID_ENV, ""),
                              str(sys.stdin.read() == "")]))


def test_a_child_runs_its_target_with_its_arguments_and_name(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    child = Spawner().Process(target=record_child, args=(out,), name="api")
    child.start()
    child.join(60)
    assert child.exitcode == 0 and not child.is_alive()
    name, parent, stdin_empty = out.read_text().split()
    assert (name, parent, stdin_empty) == ("api", str(os.getpid()), "True")


@pytest.mark.parametrize(("target", "args", "code"), [
    (sys.exit, (3,), 3),
    (sys.exit, (None,), 0),
    (int, ("not a number",), 1),  # an uncaught exception: 1, as multiprocessing
])
def test_exit_codes_are_multiprocessings(target: object, args: tuple[object, ...],
                                         code: int) -> None:
    child = ChildProcess(target, args)  # type: ignore[arg-type]
    child.start()
    child.join(60)
    assert child.exitcode == code


def test_terminate_join_and_kill() -> None:
    child = ChildProcess(time.sleep, (60,), name="sleeper")
    assert child.exitcode is None and child.pid is None and not child.is_alive()
    child.start()
    assert child.is_alive() and child.exitcode is None
    began = time.monotonic()
    child.join(0.2)  # returns when the time is up
    assert child.is_alive() and time.monotonic() - began < 5
    child.terminate()
    child.join(30)
    assert child.exitcode == -signal.SIGTERM
    child.kill()  # a no-op once it is gone
    with pytest.raises(RuntimeError):
        child.start()


def test_an_unpicklable_target_fails_in_the_parent() -> None:
    child = ChildProcess(lambda: None)
    with pytest.raises(Exception, match=r"pickle|lambda"):
        child.start()
    assert child.pid is None


_PROBE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    marker = Path(sys.argv[1])
    with marker.open("a") as handle:  # each run of this main module adds a line
        handle.write(f"{os.getpid()}\\n")
    if __name__ == "__main__":
        from chroma.control.supervisor import ChildSpec, Supervisor
        supervisor = Supervisor([ChildSpec("sleeper", "worker", time.sleep, (1.5,))])
        supervisor._start(supervisor.children[0])
        process = supervisor.children[0].process
        tree = [int(p) for p in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
                .read_text().split()]
        names = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\\0", b" ").decode()
                 for p in tree]
        process.join(60)
        print(process.exitcode, sum("resource_tracker" in n for n in names), len(tree))
""")


def test_the_supervisor_starts_no_resource_tracker_and_runs_no_main_module_again(
        tmp_path: Path) -> None:
    """With multiprocessing's spawn this probe had two children (the sleeper and a
    resource tracker) and its main module ran twice (once more as ``__mp_main__``)."""
    probe, marker = tmp_path / "probe.py", tmp_path / "ran"
    probe.write_text(_PROBE)
    out = subprocess.run([sys.executable, str(probe), str(marker)], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.split() == ["0", "0", "1"]
    assert len(marker.read_text().split()) == 1
