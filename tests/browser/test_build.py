"""The committed build under chroma/api/static/ui is what `web/` builds to.

The app ships pre-built inside the Python package (a machine without Node.js serves it),
so a change to web/ without a fresh `npm run build` must fail here. Needs npm (and the
registry, for `npm ci`, unless web/node_modules is already installed)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
COMMITTED = ROOT / "components" / "chroma" / "api" / "static" / "ui"


def _files(directory: Path) -> dict[str, Path]:
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed: cannot rebuild web/")
def test_committed_build_matches_the_sources(tmp_path: Path) -> None:
    if not (WEB / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       capture_output=True, timeout=600)
    out = tmp_path / "ui"
    built = subprocess.run(["npm", "run", "build", "--", "--outDir", str(out)], cwd=WEB,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    fresh, committed = _files(out), _files(COMMITTED)
    assert sorted(fresh) == sorted(committed), (
        "web/ builds other files than the committed ones: run `cd web && npm ci && npm run "
        f"build` and commit; only built: {sorted(set(fresh) - set(committed))}, only "
        f"committed: {sorted(set(committed) - set(fresh))}")
    differ = [name for name in fresh
              if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not differ, f"rebuild and commit: these differ from the sources' build: {differ}"
