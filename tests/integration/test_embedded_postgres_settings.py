"""The embedded PostgreSQL runs with ``SERVER_SETTINGS`` (real server, initdb included):
they size its memory (shared buffers count in the RSS of every backend that touched
them, bench/footprint.py), so a setting that silently did not apply would go unseen."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from chroma.catalog.embedded import SERVER_SETTINGS, EmbeddedPostgres

pytestmark = pytest.mark.integration


def test_the_embedded_server_runs_with_our_settings() -> None:
    root = Path(tempfile.mkdtemp(prefix="chroma-test-pgconf-"))  # see test_embedded_postgres
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "postgres")
    try:
        with psycopg.connect(server.start()) as connection:
            shown = {name: connection.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                     for name in SERVER_SETTINGS}
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert shown == SERVER_SETTINGS
    assert SERVER_SETTINGS["shared_buffers"] == "16MB"
