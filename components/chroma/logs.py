"""One logging configuration for every ``chroma`` process, and the current request's id.

:func:`configure_logging` is called once per process (``chroma run`` and each child it
spawns, ``chroma serve``, ``chroma worker``); uvicorn gets the same :func:`logging_config`
(it applies it in each of its worker processes) and its loggers keep no handler of their
own, so API lines look like every other line. Every record is one line (a traceback is
folded into it, newlines escaped) with time, level, process, logger, the request id and
the message; the ``json`` format writes the same fields as one JSON object per line.

:data:`request_id` holds the id of the HTTP request being served (set by the API's
middleware), so any log record made while serving it carries it.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from typing import Any, Literal

__all__ = ["configure_logging", "logging_config", "request_id"]

request_id: ContextVar[str | None] = ContextVar("chroma_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class OneLineFormatter(logging.Formatter):
    """The text format, with a traceback's newlines escaped: one event, one line."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of every process (uvicorn's workers take it too).

    One handler on the root logger; uvicorn's loggers keep none of their own and
    propagate to it, so API lines look like every other line.
    """
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if fmt == "json" else
                                 {"()": f"{__name__}.OneLineFormatter", "fmt": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"line": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "filters": ["request_id"], "formatter": "line"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            **{name: {"handlers": [], "propagate": True}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            # httpx logs every request at INFO: noise around the CLI's one-line errors.
            "httpx": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Apply :func:`logging_config` to this process (replacing what was there)."""
    logging.config.dictConfig(logging_config(level, fmt))
