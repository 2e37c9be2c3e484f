"""Concurrent creators of one new collection that pick *different* version numbers.

One creator checks for the alias, then stalls while another creates version 1 and makes
it live; it then picks version 2. It must defer to the live version 1 and drop its own
(Qdrant overwrites an alias without a compare-and-set, so it must look before pointing).
The stall is a test double (``qdrant_faults``) around the server ``remote_server`` picks.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import RemoteServer
from qdrant_client import QdrantClient
from qdrant_faults import ServerDouble

pytestmark = pytest.mark.integration

KEY = "race"
DIMENSION = 8


class StallAfterAliasCheck(ServerDouble):
    """The first alias read returns, then waits until ``resume`` is set."""

    def __init__(self, inner: QdrantClient, resume: threading.Event, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self.stalled = threading.Event()
        self._resume: threading.Event | None = resume

    def after(self, name: str, result: Any) -> Any:
        if name == "get_aliases" and self._resume is not None:
            resume, self._resume = self._resume, None
            self.stalled.set()
            assert resume.wait(20), "never resumed"
        return result


def test_a_late_creator_defers_to_the_collection_already_live(
    qdrant_server: RemoteServer,
) -> None:
    resume = threading.Event()
    late_double = StallAfterAliasCheck(
        qdrant_server.connect(), resume, lock=qdrant_server.lock, shared=not qdrant_server.is_real
    )
    late = qdrant_server.open(wrap=lambda *_, **__: late_double)
    early = qdrant_server.open()
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(late.ensure_collection(KEY, DIMENSION)))
    thread.start()
    assert late_double.stalled.wait(20)
    first = early.ensure_collection(KEY, DIMENSION)  # version 1, live
    resume.set()
    thread.join(30)
    assert outcome and outcome[0].version == first.version == 1
    prefix = f"{qdrant_server.config.collection_prefix}{KEY}__v"
    names = [c.name for c in qdrant_server.connect().get_collections().collections]
    assert sorted(name for name in names if name.startswith(prefix)) == [f"{prefix}000001"]
