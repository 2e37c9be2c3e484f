"""scripts/local-cluster.sh and its helpers without building a cluster: they parse, the
sub-commands that need no root behave (usage, env, an idempotent down, check refusing a
non-root user), and the pause program builds as a static binary that exits on SIGTERM.
The cluster itself is exercised by the e2e tier (tests/e2e)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local-cluster.sh"


@pytest.mark.parametrize("name", ["local-cluster.sh", "test.sh", "build-e2e-images.sh",
                                  "envtest-assets.sh"])
def test_scripts_parse(name: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / "scripts" / name)], check=True)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_usage_and_env(tmp_path: Path) -> None:
    assert run("nope").returncode == 2
    out = run("env", env={"CHROMA_CLUSTER_STATE": str(tmp_path / "state")}).stdout
    assert f"export KUBECONFIG={tmp_path}/state/kubeconfig" in out
    assert "export KUBEBUILDER_ASSETS=" in out


def test_down_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    proc = run("down", env={"CHROMA_CLUSTER_STATE": str(tmp_path / "absent")})
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stderr
    assert not (tmp_path / "absent").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root (to drop to another user) and setpriv")
def test_check_refuses_a_non_root_user() -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "bash", str(SCRIPT), "check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "not root" in proc.stdout


@pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")
def test_the_pause_program_is_static_and_stops_on_sigterm(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary),
                    str(REPO / "scripts" / "cluster" / "pause.c")], check=True)
    assert b"statically linked" in subprocess.run(["file", str(binary)], capture_output=True,
                                                   check=False).stdout or not shutil.which("file")
    proc = subprocess.Popen([str(binary)])
    time.sleep(0.3)
    assert proc.poll() is None, "pause exited on its own"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
