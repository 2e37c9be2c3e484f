"""``chroma run`` and ``chroma serve``: start the embedded stack or only the API."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import IO

import uvicorn

from chroma.catalog import Catalog, Database, apply_migrations
from chroma.control.supervisor import ChildSpec, Supervisor
from chroma.control.worker import run_worker
from chroma.locks import LockHeld, hold_pid_lock
from chroma.operations.kinds import WORKERS
from chroma.settings import Settings

__all__ = ["DataDirLocked", "child_specs", "lock_data_dir", "run_embedded", "serve_api"]

log = logging.getLogger(__name__)


class DataDirLocked(RuntimeError):
    """Another ``chroma run`` already owns this data directory."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``data_dir`` for this process's life (flock: freed on crash)."""
    try:
        return hold_pid_lock(data_dir / ".chroma.lock")
    except LockHeld as held:
        raise DataDirLocked(
            f"{data_dir} is in use by chroma run ({held.owner}); stop it first or use --data-dir"
        ) from None


def child_specs() -> list[ChildSpec]:
    specs = [ChildSpec("api", "api", api_process)]
    for name, kinds in WORKERS.items():
        specs.append(ChildSpec(name, "worker", run_worker, (name, kinds), kinds))
    return specs


def api_process() -> None:
    """Entry point of the API child: settings come from the environment."""
    serve_api(Settings())


def run_embedded() -> None:
    """Everything on one machine: PostgreSQL (unless a DSN is set), the API and workers."""
    settings = Settings()
    try:
        lock = lock_data_dir(settings.data_dir)
    except DataDirLocked as exc:
        print(f"chroma run: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.database_url is None:
        from chroma.catalog.embedded import start_embedded_postgres

        dsn = start_embedded_postgres(settings.postgres_dir)
        os.environ["CHROMA_DATABASE_URL"] = dsn  # children inherit it
        log.info("embedded PostgreSQL ready under %s", settings.postgres_dir)
    dsn = os.environ["CHROMA_DATABASE_URL"]
    apply_migrations(dsn)  # once, before the children start
    db = Database(dsn, max_size=2)
    db.open()
    try:
        Supervisor(child_specs(), Catalog(db).operations).run()
    finally:
        db.close()
        lock.close()


def serve_api(settings: Settings) -> None:
    """Run the API under uvicorn (settings travel to worker processes by environment)."""
    log.info(
        "Chroma API on http://%s:%s (store %s)",
        settings.host, settings.port, settings.resolved_storage_url,
    )
    uvicorn.run(
        "chroma.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_workers,
        log_level="info",
        access_log=False,
    )
