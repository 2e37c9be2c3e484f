"""``scripts/install.sh`` (``make install``) refuses a machine without Python 3.11 clearly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install.sh"
TOOLS = ("bash", "mktemp", "date", "awk", "dirname", "rm", "cat", "grep", "sed", "tee")


def test_without_python_311_it_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"no {tool}")
        (bin_dir / tool).symlink_to(found)
    fake = bin_dir / "python3"  # a Python 3.12, as Ubuntu 24.04's
    fake.write_text('#!/bin/sh\n'
                    '[ "$1" = --version ] && { echo "Python 3.12.3"; exit 0; }\n'
                    'exit 1\n')
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", str(SCRIPT)], env={"PATH": str(bin_dir), "VENV": str(venv)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert "needs Python 3.11 (found: Python 3.12.3)" in done.stderr
    assert "python3.11-venv" in done.stderr and "PYTHON=" in done.stderr
    assert not venv.exists()
