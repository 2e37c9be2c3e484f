"""The supervisor's status records (a child starting, down, stopped), written by a helper.

Owns :class:`SpawnedRecorder`: the lean supervisor of ``chroma run`` keeps no PostgreSQL
client, since psycopg and the catalog cost ~24 MiB RSS in a process that writes a row only
when a child starts or exits. The recorder queues those rows and a short-lived helper
interpreter (:func:`write_from_stdin`, ~0.3 s of CPU) writes each batch, one helper at a
time, so rows land in the order they were recorded. Records are advisory, as before: a
catalog that is down loses them with a warning and never holds up supervision.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["SpawnedRecorder", "write_from_stdin"]

log = logging.getLogger(__name__)

_WRITER = "from chroma.control.status import write_from_stdin as w; w()"


class SpawnedRecorder:
    """``component_state`` as :class:`chroma.catalog.Operations` has it, written by a
    helper process (``env``: where it finds ``CHROMA_DATABASE_URL``, never a command
    line, which ``ps`` shows)."""

    def __init__(self, env: Mapping[str, str], *, timeout_s: float = 30.0) -> None:
        self.env = dict(env)
        self.timeout_s = timeout_s
        self._rows: list[dict[str, Any]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def component_state(self, name: str, kind: str, state: str, *,
                        restarts: int | None = None, last_error: str | None = None,
                        pid: int | None = None) -> None:
        """Queue the row; a helper writes it shortly (never blocks the caller)."""
        row = {"name": name, "kind": kind, "state": state, "restarts": restarts,
               "last_error": last_error, "pid": pid}
        with self._wake:
            self._rows.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="status-writer",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Write what is queued (waiting up to ``timeout_s`` for each helper), then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(self.timeout_s * 2)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._rows and not self._closed:
                    self._wake.wait()
                if not self._rows:
                    return
                batch, self._rows = self._rows, []
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            done = subprocess.run([sys.executable, "-c", _WRITER], input=json.dumps(batch),
                                  capture_output=True, text=True, env=self.env,
                                  timeout=self.timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("could not record component states: %s", exc)
            return
        for line in done.stderr.splitlines():
            log.warning("%s", line)
        if done.returncode:
            log.warning("could not record component states (helper exited with %s)",
                        done.returncode)


def write_from_stdin() -> None:
    """The helper: write the JSON list of rows on stdin, in order; say on stderr what
    could not be written (the catalog's own message, which names no credentials)."""
    import os

    from chroma.catalog import Catalog, Database
    from chroma.errors import ChromaError

    rows = json.loads(sys.stdin.read())
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # its retries: the line below says it
    db = Database(os.environ["CHROMA_DATABASE_URL"], max_size=1, min_size=0,
                  connect_timeout=1.0, name="chroma supervisor")
    db.open()
    try:
        operations = Catalog(db).operations
        for row in rows:
            try:
                operations.component_state(**row)
            except ChromaError as exc:  # e.g. the catalog is down: advisory, go on
                print(f"could not record {row['name']} as {row['state']}: {exc.message}",
                      file=sys.stderr)
            except Exception as exc:
                print(f"could not record {row['name']} as {row['state']}: "
                      f"{type(exc).__name__}", file=sys.stderr)
    finally:
        db.close()
