"""The long-lived objects one API process holds, opened and closed with the app."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from chroma.catalog import Catalog, Database, Operations, apply_migrations
from chroma.ingest import CommitResult, GroupCommitter
from chroma.labelling import Assessor
from chroma.operations.launchers import OperationLauncher, QueueLauncher, make_launcher
from chroma.settings import Settings
from chroma.storage import FileStore, open_store

__all__ = ["Services"]

log = logging.getLogger(__name__)

IMPLICIT_OPERATIONS = ("index", "recommend")
"""What a commit queues for its embedding set, so that nobody has to ask."""


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    store: FileStore
    committer: GroupCommitter
    operations: Operations
    component_name: str = "api"
    _stop: threading.Event = field(default_factory=threading.Event)
    _triggered: dict[str, float] = field(default_factory=dict)
    commit_listeners: list[Callable[[list[CommitResult]], None]] = field(default_factory=list)
    launcher: OperationLauncher = field(default_factory=QueueLauncher)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        if settings.database_url is None:
            raise RuntimeError(
                "CHROMA_DATABASE_URL is not set: use `chroma run` (which starts its own "
                "PostgreSQL) or point CHROMA_DATABASE_URL at a server"
            )
        dsn = settings.database_url.get_secret_value()
        apply_migrations(dsn)
        db = Database(dsn, max_size=settings.db_pool_max)
        db.open()
        catalog = Catalog(db)
        store = open_store(settings)
        committer = GroupCommitter(
            catalog,
            store,
            window_s=settings.group_commit_window_ms / 1000.0,
            max_records=settings.group_commit_max_records,
        )
        name = os.environ.get("CHROMA_COMPONENT_NAME") or (
            "api" if settings.mode == "embedded" else f"api@{socket.gethostname()}"
        )
        services = cls(settings, db, catalog, store, committer, catalog.operations, name,
                       launcher=make_launcher(settings))
        committer.on_commit = services.after_commit
        committer.start()
        threading.Thread(target=services._heartbeat, daemon=True, name="heartbeat").start()
        return services

    def close(self) -> None:
        self._stop.set()
        self.committer.stop()
        try:
            self.operations.component_state(self.component_name, "api", "stopped")
        except Exception:
            log.debug("could not record the api as stopped", exc_info=True)
        self.db.close()

    @cached_property
    def assessor(self) -> Assessor:
        """Assessments of production records on /log (opened on first use)."""
        return Assessor(self.settings, self.catalog, self.store)

    def after_commit(self, results: list[CommitResult]) -> None:
        """Runs in the commit thread after the requests were answered."""
        for listener in self.commit_listeners:
            listener(results)
        self.trigger_index(results)

    def trigger_index(self, results: list[CommitResult]) -> None:
        """Implicit triggers: committed records make the index and the labelling queue
        stale; queue ``index`` and ``recommend`` (which waits for the index and refits
        MHB when the training data changed).

        Debounced per embedding set; the catalog coalesces to one active operation."""
        for key in {r.embedding_set_key for r in results}:
            self.records_changed(key)

    def records_changed(self, key: str | None) -> None:
        """Queue the implicit operations of an embedding set whose records changed
        (logged, deleted, tagged), unless asked within the debounce period."""
        if key is None:
            return
        now = time.monotonic()
        if now - self._triggered.get(key, -1e9) < self.settings.index_trigger_debounce_s:
            return
        self._triggered[key] = now
        for kind in IMPLICIT_OPERATIONS:
            operation, created = self.operations.enqueue(kind, key, requested_by="trigger")
            if created:
                log.info("queued %s operation #%d for %s", kind, operation.id, key)
                self.launcher.submit(operation)

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            try:
                self.operations.component_heartbeat(
                    self.component_name, "api", pid=os.getpid(), host=socket.gethostname())
            except Exception:
                log.debug("api heartbeat failed", exc_info=True)
            self._stop.wait(2.0)
