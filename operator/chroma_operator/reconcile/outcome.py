"""What every reconciler shares: the ``Outcome`` it returns, per-object locks, and the
one way to record a status (and, when the work is not done, when to try again).

Owns: ``Outcome`` (Event-ready lines, the status written, the retry wish),
``lock_for`` and ``record``. No decisions about any kind: those are in the sibling
modules ``cluster``, ``indexjob`` and ``dataset``. Uses ``Kube`` only to write status.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chroma_operator.kube import Kube
from chroma_operator.status import status_patch

Body = dict[str, Any]

__all__ = ["Body", "Outcome", "lock_for", "record"]

_locks: defaultdict[tuple[str, ...], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def lock_for(*key: str) -> threading.Lock:
    """One lock per key: kopf may run a resource's handlers and child events at once."""
    with _locks_guard:
        return _locks[key]


@dataclass
class Outcome:
    """What a reconcile did and found; handlers turn ``events`` into Kubernetes Events
    and ``retry_after`` into kopf's ``TemporaryError``."""

    status: Mapping[str, Any] = field(default_factory=dict)
    """The status written last (a ``status_types`` TypedDict)."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) with type ``Normal`` or ``Warning``."""
    retry_after: float | None = None
    """Set when the work is not finished and should be retried (seconds)."""
    retry_reason: str = ""

    def note(self, reason: str, message: str, type_: str = "Normal") -> None:
        """Add an Event line (``reason`` may be a ``status_types`` constant)."""
        self.events.append((type_, str(reason), message))

    def retry(self, after: float, reason: str) -> None:
        """Ask to run again in ``after`` seconds, because of ``reason``."""
        self.retry_after, self.retry_reason = after, reason


def record(
    kube: Kube,
    body: Body,
    out: Outcome,
    status: Mapping[str, Any],
    *,
    retry_after: float | None = None,
    prune: bool = False,
) -> Outcome:
    """Write ``status`` on the custom resource ``body`` (merge patch) and keep it in ``out``.

    With ``retry_after``, the work is not done: waiting for something (a cluster, a
    sibling Job, the API), it is tried again after that many seconds, the status
    ``message`` saying why. With ``prune``, keys of the status ``body`` holds that
    ``status`` lacks are deleted (else a merge patch keeps them). Returns ``out``, so a
    reconciler can end with it."""
    out.status = status
    if retry_after is not None:
        out.retry(retry_after, str(status.get("message", "")))
    patch = status_patch(body.get("status"), status) if prune else dict(status)
    kube.patch_status(body, patch)
    return out
