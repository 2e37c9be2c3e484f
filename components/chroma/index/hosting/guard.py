"""``LiveGuard``: whether the hosted index can answer a set's searches without the catalog.

The index host is the one process every embedded search goes through, so it can know
when the index may still hold a record the catalog no longer has (or old tags):

* every change that removes or alters records outside the log path (a delete, a tag, an
  expiry, a lost file) *invalidates* its set at the host before it is acknowledged;
* an ``index`` or ``reindex`` run of the set applies the change feed up to a snapshot it
  takes after it started, so once a run that *started after* the latest invalidation
  has succeeded, the index holds no record the catalog deleted before it;
* until then (and from the host's start until its first successful run of the set: a
  delete may have landed while no host was up) the host tells searchers to check their
  hits against the catalog (``must_verify``), as every search did before.

New records reach the index straight from the commit path (``upsert`` with ``as_of``, a
``time.monotonic()`` reading taken before their commit; the clock is shared by every
process of the machine, and embedded mode is one machine). Such an upsert is refused when
a set was invalidated after ``as_of`` (the record may have been deleted since its commit;
the ``index`` run its commit queued brings it in from the feed), or when it predates the
host (the host cannot know what was deleted while it was down).

All stamps are ``time.monotonic()``; a test passes its own clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["LiveGuard"]


class LiveGuard:
    """Per embedding set: latest invalidation, start of the latest successful index run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._invalidated: dict[str, float] = {}
        self._clean_through: dict[str, float] = {}

    def now(self) -> float:
        return self._clock()

    def invalidate(self, key: str) -> None:
        """A change the index does not hold yet may remove or alter records of ``key``."""
        with self._lock:
            self._invalidated[key] = self._clock()

    def applied(self, key: str, started: float) -> None:
        """An index run of ``key`` that started at ``started`` applied the change feed."""
        with self._lock:
            self._clean_through[key] = max(self._clean_through.get(key, started), started)

    def must_verify(self, key: str) -> bool:
        """Whether hits of ``key`` must be checked against the catalog."""
        with self._lock:
            clean = self._clean_through.get(key)
            return clean is None or self._invalidated.get(key, self._started) >= clean

    def accepts(self, key: str, as_of: float) -> bool:
        """Whether an upsert of records committed after ``as_of`` may go to the index."""
        with self._lock:
            return as_of > max(self._invalidated.get(key, self._started), self._started)
