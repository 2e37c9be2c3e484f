"""What a running operation sees: its row, the catalog and store, progress reporting."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from chroma.catalog import Catalog, Operation, Operations
from chroma.settings import Settings
from chroma.storage import FileStore

__all__ = ["Interrupted", "OperationContext"]


class Interrupted(Exception):
    """Raised inside a handler at its next progress report: cancelled, lease lost, or
    shutting down (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class OperationContext:
    operation: Operation
    settings: Settings
    catalog: Catalog
    operations: Operations
    store: FileStore
    interrupt: threading.Event = field(default_factory=threading.Event)
    interrupt_reason: str = ""
    progress_value: float = 0.0
    progress_message: str | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (sent with the next heartbeat); raise if asked to stop."""
        self.progress_value = min(max(fraction, 0.0), 1.0)
        self.progress_message = message
        self.check()

    def check(self) -> None:
        if self.interrupt.is_set():
            raise Interrupted(self.interrupt_reason or "interrupted")

    def stop(self, reason: str) -> None:
        self.interrupt_reason = reason
        self.interrupt.set()
