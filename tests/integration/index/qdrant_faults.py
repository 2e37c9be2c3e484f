"""Test doubles of a Qdrant server's *faults*, wrapped around a real qdrant-client.

No Qdrant server runs here, and qdrant-client's in-memory mode never restarts, never leaves
optimizations pending and answers a duplicate ``create_collection`` with a ``ValueError``
where a server answers 409. These wrappers forward every call to the client they wrap (the
in-memory one, or a connection to a real server when ``CHROMA_TEST_QDRANT_URL`` is set)
and inject one documented server behaviour each; they are test doubles of the faults, not
of the server. Server facts they copy, from Qdrant's source (v1.12.4 to v1.19):

* a duplicate collection is ``StorageError::AlreadyExists``, answered 409 Conflict;
* after a restart a collection with pending optimizations reports status ``grey`` until an
  update (e.g. an empty ``optimizers_config`` patch) triggers them, then ``yellow`` while
  they run, then ``green``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

__all__ = ["ConcurrentStart", "NeverGreen", "RestartMidBuild", "ServerDouble"]


class ServerDouble:
    """Forwards every call to ``inner`` (under ``lock`` when given) and records its name.

    ``lock``: shared by every double around one in-memory client, which is not
    thread-safe (a server serialises what it must itself). ``shared``: ``close`` then
    leaves ``inner`` open for the other engines. A local-mode "already exists" becomes the
    server's 409. Subclasses override ``before``/``after`` to inject a fault.
    """

    def __init__(
        self, inner: QdrantClient, lock: threading.Lock | None = None, shared: bool = False
    ) -> None:
        self._inner = inner
        self._lock = lock or threading.Lock()
        self._shared = shared
        self.calls: list[str] = []

    def close(self) -> None:
        if not self._shared:
            self._inner.close()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            self.before(name, args, kwargs)
            with self._lock:
                try:
                    result = attribute(*args, **kwargs)
                except ValueError as exc:
                    if "already exists" not in str(exc):
                        raise
                    raise conflict(str(exc)) from exc
            return self.after(name, result)

        return call

    def before(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called before each forwarded call (outside the lock)."""

    def after(self, name: str, result: Any) -> Any:
        """Called with each call's result (outside the lock); returns what the caller sees."""
        return result


def conflict(message: str) -> UnexpectedResponse:
    """What qdrant-client raises when a server answers 409."""
    body = ('{"status": {"error": "Wrong input: ' + message.replace('"', "'") + '"}}').encode()
    return UnexpectedResponse(409, "Conflict", body, httpx.Headers())


class RestartMidBuild(ServerDouble):
    """After ``restart()``, collections report grey until optimizers are triggered.

    Then ``yellow_polls`` status reads report yellow, then the real status again.
    ``triggers`` counts the empty-optimizers-config updates that woke them.
    """

    def __init__(self, inner: QdrantClient, *, yellow_polls: int = 3, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self.restarted = False
        self.triggers = 0
        self._yellow_left = 0
        self._yellow_polls = yellow_polls

    def restart(self) -> None:
        self.restarted = True

    def before(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        optimizers = kwargs.get("optimizers_config")
        if name == "update_collection" and self.restarted and optimizers is not None:
            self.restarted, self._yellow_left = False, self._yellow_polls
            self.triggers += 1

    def after(self, name: str, result: Any) -> Any:
        if name != "get_collection":
            return result
        if self.restarted:
            return with_status(result, models.CollectionStatus.GREY)
        if self._yellow_left > 0:
            self._yellow_left -= 1
            return with_status(result, models.CollectionStatus.YELLOW)
        return result


class NeverGreen(ServerDouble):
    """Collections stay yellow forever: optimizers that never finish."""

    def after(self, name: str, result: Any) -> Any:
        if name == "get_collection":
            return with_status(result, models.CollectionStatus.YELLOW)
        return result


class ConcurrentStart(ServerDouble):
    """The first collection listing waits at ``barrier``, so every creator sharing it has
    seen no alias and the same versions before any of them creates a collection."""

    def __init__(self, inner: QdrantClient, barrier: threading.Barrier, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self._barrier: threading.Barrier | None = barrier

    def after(self, name: str, result: Any) -> Any:
        if name == "get_collections" and self._barrier is not None:
            barrier, self._barrier = self._barrier, None
            barrier.wait()
        return result


def with_status(info: Any, status: models.CollectionStatus) -> Any:
    return info.model_copy(update={"status": status})


Wrapper = Callable[[QdrantClient], ServerDouble]
