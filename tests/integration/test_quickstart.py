"""The README's quickstart runs as written against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


@pytest.mark.parametrize("storage_env", ["local"], indirect=True)
def test_quickstart_runs(chroma_server) -> None:
    done = subprocess.run([sys.executable, str(QUICKSTART), chroma_server.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dataset quickstart-train     training   3000 records" in done.stdout
    assert "dataset quickstart-prod      production 500 records" in done.stdout
