"""The embedded PostgreSQL's watchdog: it stops the server once its owner is gone.

``pg_ctl`` starts the postmaster in a session of its own (so a terminal's Ctrl-C does not
stop the database under the API's in-flight commits), which also lets it survive a
SIGKILL of ``chroma run``'s process group or an OOM kill of the supervisor. This script
closes that gap. :class:`chroma.catalog.embedded.EmbeddedPostgres` starts it, also in a
session of its own, with the read end of a pipe whose only write end the owner holds:
the kernel closes that end however the owner dies (SIGKILL included, zombie or not), the
read end sees end-of-file, and the watchdog stops the postmaster (fast shutdown, then
immediate, then SIGKILL) and exits. It exits by itself once the postmaster is gone.

Only the standard library is imported: it runs as ``python -I _pgwatch.py PID FD`` and
must stay small (it lives as long as the server). The owner imports the same
:func:`stop_postmaster` and :func:`process_alive`, so there is one way to stop a server.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["WATCHDOG", "process_alive", "start_ticks", "stop_postmaster", "watchdog_command"]


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie.

    Together with the pid it names one process: a recycled pid has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and ")"
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent: gone for us
        return None
    return int(fields[19])


def process_alive(pid: int, ticks: int | None = None) -> bool:
    """Whether ``pid`` runs (and, if ``ticks`` is given, is still the same process)."""
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def stop_postmaster(pid: int, ticks: int | None = None, *, fast_s: float = 30.0) -> None:
    """Stop a postmaster and wait until it is gone.

    SIGINT is PostgreSQL's fast shutdown (roll back, disconnect, checkpoint); SIGQUIT
    its immediate shutdown (crash recovery at the next start) if that takes too long;
    SIGKILL last (the backends notice their postmaster's death and exit).
    """
    for sig, wait_s in ((signal.SIGINT, fast_s), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        if not process_alive(pid, ticks):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and process_alive(pid, ticks):
            time.sleep(0.1)


WATCHDOG = r"""
trap '' INT
pid=$1 ticks=$2
alive() {  # $pid is running and started at $ticks (not a zombie): as start_ticks()
    stat=
    { read -r stat < "/proc/$pid/stat"; } 2>/dev/null || return 1
    set -- ${stat##*) }
    case $1 in Z|X) return 1 ;; esac
    [ -n "$ticks" ] && [ "${20}" = "$ticks" ]
}
while read -r _; do :; done  # the owner never writes: end-of-file when its end closes
alive || exit 0
echo "pgwatch: owner gone; stopping postmaster $pid" >&2
for step in "INT 300" "QUIT 100" "KILL 100"; do  # as stop_postmaster(): tenths of a second
    set -- $step
    alive || exit 0
    kill -s "$1" "$pid" 2>/dev/null || exit 0
    n=$2
    while [ "$n" -gt 0 ] && alive; do sleep 0.1; n=$((n - 1)); done
done
"""
"""The watchdog: ``sh -c WATCHDOG pgwatch PID TICKS`` with the pipe's read end as stdin."""


def watchdog_command(pid: int, ticks: int | None) -> list[str]:
    """The watchdog's command line for the postmaster ``pid`` started at ``ticks``."""
    return ["/bin/sh", "-c", WATCHDOG, "pgwatch", str(pid),
            "" if ticks is None else str(ticks)]
