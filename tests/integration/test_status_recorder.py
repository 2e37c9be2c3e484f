"""The lean supervisor's status records, written by a helper process into a real catalog
(``chroma.control.status``): in the order recorded, and a catalog that is away costs a
warning, never the caller's time."""

from __future__ import annotations

import logging
import os
import time

import pytest

from chroma.catalog import Catalog
from chroma.control.status import SpawnedRecorder


def test_rows_recorded_one_after_another_land_in_order(own_catalog: Catalog) -> None:
    recorder = SpawnedRecorder({**os.environ, "CHROMA_DATABASE_URL": own_catalog.db.dsn})
    began = time.monotonic()
    recorder.component_state("api", "api", "starting", restarts=0, pid=101)
    recorder.component_state("compactor", "worker", "starting", restarts=0, pid=102)
    recorder.component_state("api", "api", "down", restarts=0,
                             last_error="exited with code 1")
    recorder.component_state("api", "api", "starting", restarts=1, pid=103)
    queued_in = time.monotonic() - began
    recorder.close()
    rows = {row.name: row for row in own_catalog.operations.components()}
    assert queued_in < 0.5  # the helper writes; the supervisor's loop never waits on it
    assert (rows["api"].state, rows["api"].restarts, rows["api"].pid) == ("starting", 1, 103)
    assert rows["api"].last_error == "exited with code 1"
    assert (rows["compactor"].state, rows["compactor"].pid) == ("starting", 102)


def test_a_catalog_that_is_away_costs_a_warning_naming_no_secret(
        caplog: pytest.LogCaptureFixture, own_catalog: Catalog) -> None:
    dsn = "postgresql://chroma:s3cret-pw@127.0.0.1:9/chroma"  # nothing listens on port 9
    recorder = SpawnedRecorder({**os.environ, "CHROMA_DATABASE_URL": dsn})
    with caplog.at_level(logging.WARNING, logger="chroma.control.status"):
        recorder.component_state("api", "api", "starting", pid=1)
        recorder.close()
    assert "could not record api as starting" in caplog.text
    assert "s3cret-pw" not in caplog.text
