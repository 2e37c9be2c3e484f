"""The layering the package docstrings describe, enforced.

``.importlinter`` holds the contracts (layers from ``cli`` down to ``errors | keys |
settings | locks | clock``; ``scoring`` pure; the ``index`` library free of the
catalog; psycopg only in ``catalog``; the operator apart). A change that imports up the
layers fails here, not only in ``make lint``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "components" / "chroma"
SQL = re.compile(r"""\.execute\(|\.copy\(["']COPY|["'](SELECT|INSERT INTO|UPDATE|DELETE FROM)\s""")


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(REPO / ".importlinter")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_sql_outside_the_catalog() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "catalog" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert offenders == []


def test_the_sql_check_sees_sql() -> None:
    """The pattern above must match what the catalog writes, or the test proves nothing."""
    catalog_lines = "\n".join(p.read_text() for p in (PACKAGE / "catalog").glob("*.py"))
    assert len(SQL.findall(catalog_lines)) > 20
