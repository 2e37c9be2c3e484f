"""The long-lived objects one API process holds, opened and closed with the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chroma.catalog import Catalog, Database, apply_migrations
from chroma.ingest import GroupCommitter
from chroma.settings import Settings
from chroma.storage import FileStore, open_store

__all__ = ["Services"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    store: FileStore
    committer: GroupCommitter

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
        committer.start()
        return cls(settings, db, catalog, store, committer)

    def close(self) -> None:
        self.committer.stop()
        self.db.close()
