"""``chroma run`` and ``chroma serve``: start the embedded stack or only the API.

``chroma run`` holds the data directory's lock for its whole life, starts the embedded
PostgreSQL (which stops with it: :class:`chroma.catalog.embedded.EmbeddedPostgres`), and
supervises the API and worker processes and that server. Each spawned child configures
logging as its parent did (:mod:`chroma.logs`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from chroma.control.startup import announce_ready, detail_to_file, quiet_server_banner, since
from chroma.control.status import SpawnedRecorder
from chroma.control.supervisor import ChildSpec, Supervisor, Watched
from chroma.lifetime import die_with_parent, parent_pid_from_env
from chroma.locks import LockHeld, hold_pid_lock
from chroma.logs import configure_logging, logging_config
from chroma.memory import child_environment, refuse_unused_imports, start_idle_release

if TYPE_CHECKING:
    from chroma.catalog.embedded import EmbeddedPostgres
    from chroma.settings import Settings

__all__ = [
    "DataDirLocked", "api_hosts_index", "child_specs", "lock_data_dir", "run_embedded",
    "serve_api", "supervise_handed_over",
]

log = logging.getLogger(__name__)

INDEXER = "indexer"
"""The worker loop that writes the embedded index (kinds ``index``, ``reindex``), and so
hosts it."""


class DataDirLocked(RuntimeError):
    """Another ``chroma run`` already owns this data directory."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``data_dir`` for this process's life (flock: freed on crash)."""
    try:
        return hold_pid_lock(data_dir / ".chroma.lock")
    except LockHeld as held:
        raise DataDirLocked(
            f"{data_dir} is in use by chroma run ({held.owner}); stop it first or use --data-dir"
        ) from None


def __getattr__(name: str) -> Any:
    """``WORKERS`` (the kinds table's worker layout), loaded on first use: the kinds
    table loads pydantic, which the handed-over supervisor does without."""
    if name == "WORKERS":
        from chroma.operations.kinds import WORKERS

        return WORKERS
    raise AttributeError(name)


def child_specs(worker_processes: str = "shared", *, index_in_api: bool = False,
                workers: Mapping[str, Sequence[str]] | None = None
                ) -> list[ChildSpec]:
    """The API and the workers: every worker loop in one process (``shared``, the
    default: a resident copy of the libraries instead of four), or one process each
    (``separate``: a crash takes one worker down, not all; ``CHROMA_WORKER_PROCESSES``).

    ``index_in_api`` (:func:`api_hosts_index`): the ``indexer`` loop runs in the API
    process instead, which then hosts the embedded index; the workers keep the rest."""
    if workers is None:
        from chroma.operations.kinds import WORKERS as workers
    loops = {name: tuple(kinds) for name, kinds in workers.items()}
    if index_in_api:
        indexer = {INDEXER: loops.pop(INDEXER)}
        specs = [ChildSpec("api", "api", api_process, (indexer,), indexer[INDEXER],
                           components=("api", INDEXER))]
    else:
        specs = [ChildSpec("api", "api", api_process)]
    if worker_processes == "shared":
        every_kind = tuple(kind for kinds in loops.values() for kind in kinds)
        specs.append(ChildSpec("workers", "worker", workers_process, (loops,),
                               every_kind, components=tuple(loops)))
        return specs
    for name, kinds in loops.items():
        specs.append(ChildSpec(name, "worker", workers_process, ({name: kinds},), kinds))
    return specs


def api_hosts_index(settings: Settings) -> bool:
    """Whether ``chroma run``'s API process runs the ``indexer`` loop (and so hosts the
    embedded index): ``index_host=api``, the edge backend, and one API process (uvicorn
    workers are processes of their own; only one process can host)."""
    return (settings.index_host == "api" and settings.index_backend == "edge"
            and settings.api_workers == 1)


def api_process(loops: Mapping[str, Sequence[str]] | None = None) -> None:
    """Entry point of the API child: settings come from the environment. ``loops``:
    worker loops it runs as threads beside the server (the ``indexer``, which then
    hosts the index in this process before the first request)."""
    from chroma.settings import Settings  # not in the supervisor

    stop_with_parent()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)  # a spawned child starts bare
    quiet_server_banner()  # the supervisor logs 'api: ... ready' instead
    start_idle_release(settings.memory_release_check_s,
                       settle_s=settings.memory_release_settle_s)
    refuse_unused_imports()
    if not loops:
        serve_api(settings)
        return
    from chroma.control.worker import start_worker_loops  # the supervisor never loads it

    stop_loops = start_worker_loops(loops)
    # uvicorn restores the handlers it found and raises the signal it caught again once
    # it has shut down: with a handler of ours that second delivery does not kill the
    # process before the loops gave their operation back to the queue.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        serve_api(settings)
    finally:
        stop_loops()


def workers_process(loops: Mapping[str, Sequence[str]]) -> None:
    """Entry point of a worker child (one loop per ``name -> kinds``), logging as its
    parent does."""
    from chroma.settings import Settings  # not in the supervisor

    stop_with_parent()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    start_idle_release(settings.memory_release_check_s,
                       settle_s=settings.memory_release_settle_s)
    refuse_unused_imports()
    from chroma.control.worker import run_workers  # the supervisor never loads it

    run_workers(loops)


def stop_with_parent() -> None:
    """Have the kernel SIGKILL this child when the supervisor dies.

    A SIGKILL of the whole process group takes the children with it, but the OOM killer
    kills one process: without this the API and workers of a dead supervisor lived on,
    holding the port. SIGKILL, not SIGTERM: a graceful stop waited on the catalog, which
    the watchdog stops at the same moment, and hung (seen in about half the runs of
    test_sigkill_of_the_supervisor_alone_leaves_no_process); dying as the whole group
    would is safe by design (acknowledged writes are durable, leases expire). The
    parent-death signal fires when the thread that forked us ends; the supervisor forks
    from its main thread, which ends only with the process.
    """
    parent = mp.parent_process()  # when started by multiprocessing (e.g. a test's)
    die_with_parent(parent.pid if parent is not None else parent_pid_from_env())


def run_embedded() -> None:
    """Everything on one machine: PostgreSQL (unless a DSN is set), the API and workers.

    Start-up (settings, the lock, PostgreSQL, migrations) runs here; then this process
    execs into :func:`supervise_handed_over`, which supervises with what the long
    run needs: the command line, pydantic-settings, yoyo and the PostgreSQL wheel are
    ~27 MiB of RSS a supervisor kept for nothing (65 -> ~38 MiB)."""
    from chroma.settings import Settings  # not in the handed-over supervisor

    start = time.monotonic()
    settings = Settings()
    try:
        lock = lock_data_dir(settings.data_dir)
    except DataDirLocked as exc:
        print(f"chroma run: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    detail = detail_to_file(settings.data_dir / "logs")
    if detail is not None:
        log.info("chroma run: data in %s (start-up detail: %s)",
                 settings.data_dir.resolve(), detail)
    postgres = None
    try:
        if settings.database_url is None:
            postgres = _start_postgres(settings.postgres_dir)
            os.environ["CHROMA_DATABASE_URL"] = postgres.dsn  # children inherit it
        _migrate(os.environ["CHROMA_DATABASE_URL"])
        handover = {
            "lock_fd": lock.fileno(), "postgres": postgres.handover() if postgres else None,
            "start": start, "host": settings.host, "port": settings.port,
            "log_level": settings.log_level, "log_format": settings.log_format,
            "log_dir": str(settings.data_dir / "logs"),
            "worker_processes": settings.worker_processes,
            "index_in_api": api_hosts_index(settings), "workers": _workers()}
        _exec_supervisor(handover, lock)
    except BaseException:
        if postgres is not None:
            postgres.stop()
        lock.close()
        raise


HANDOVER_ENV = "CHROMA_SUPERVISOR_HANDOVER"
"""Where :func:`run_embedded` leaves what the supervisor it execs into takes over (JSON)."""

_SUPERVISOR = "from chroma.control.embedded import supervise_handed_over as s; s()"


def _exec_supervisor(handover: dict[str, Any], lock: IO[str]) -> NoReturn:
    """Replace this process (same pid: children, watchdog and lock stay ours) by the
    lean supervisor; its command line ends in ``chroma run``, as ``ps`` showed before."""
    os.set_inheritable(lock.fileno(), True)  # the flock goes with the open file
    os.environ[HANDOVER_ENV] = json.dumps(handover)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-c", _SUPERVISOR, "chroma", "run"])


def supervise_handed_over() -> None:
    """The supervisor :func:`run_embedded` execs into: children and PostgreSQL until a
    signal, then PostgreSQL stopped and the data directory's lock given up."""
    from chroma.catalog.embedded import EmbeddedPostgres

    state = json.loads(os.environ.pop(HANDOVER_ENV))
    configure_logging(state["log_level"], state["log_format"])
    detail_to_file(Path(state["log_dir"]))
    postgres = EmbeddedPostgres.adopt(state["postgres"]) if state["postgres"] else None
    try:
        announce_ready(state["host"], state["port"], state["start"])
        supervise(os.environ["CHROMA_DATABASE_URL"], [postgres] if postgres else [],
                  child_specs(state["worker_processes"], index_in_api=state["index_in_api"],
                              workers=state["workers"]))
    finally:
        if postgres is not None:  # after the children: they finish their commits first
            postgres.stop()
        os.close(state["lock_fd"])  # last: a new chroma run may take the directory now


def _workers() -> dict[str, list[str]]:
    from chroma.operations.kinds import WORKERS

    return {name: list(kinds) for name, kinds in WORKERS.items()}


def _migrate(dsn: str) -> None:
    """Apply the catalog's migrations once, before any child starts."""
    from chroma.catalog import apply_migrations  # not in the lean supervisor: psycopg

    began = time.monotonic()
    applied = apply_migrations(dsn)
    log.info("catalog: %s in %s", f"{len(applied)} migrations applied" if applied
             else "migrations up to date", since(began))


def _start_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Start the embedded PostgreSQL, saying in one line what it took."""
    from chroma.catalog.embedded import EmbeddedPostgres, root_os_user

    began = time.monotonic()
    fresh = not (pgdata / "PG_VERSION").exists()
    os_user = root_os_user()
    if os_user is not None:
        log.info("postgres: running as root, so PostgreSQL runs as OS user %s (%s)",
                 os_user.name, "exists" if os_user.exists else "creating it with useradd")
    postgres = EmbeddedPostgres(pgdata)
    postgres.start()
    log.info("postgres: %s in %s (%s)", "initialised and started" if fresh else "started",
             since(began), pgdata)
    return postgres


def supervise(dsn: str, watched: list[Watched], specs: Sequence[ChildSpec]) -> None:
    """Run the children ``specs`` and watch ``watched`` until a signal."""
    # Status records are advisory: while the catalog is down they must not hold up the
    # loop that restarts it. Written only when a child starts or exits, by a helper
    # process: no PostgreSQL client (~24 MiB) nor connection stays in the supervisor.
    recorder = SpawnedRecorder({**os.environ, "CHROMA_DATABASE_URL": dsn})
    child_environment(os.environ)  # the children's allocator settings, read at their start
    try:
        Supervisor(specs, recorder, watched=watched).run()
    finally:
        recorder.close()


def serve_api(settings: Settings) -> None:
    """Run the API under uvicorn (settings travel to worker processes by environment)."""
    import uvicorn  # here: the supervisor imports this module and needs no web server

    log.info(
        "Chroma API on http://%s:%s (store %s)",
        settings.host, settings.port, settings.resolved_storage_url,
    )
    uvicorn.run(
        "chroma.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_workers,
        log_config=logging_config(settings.log_level, settings.log_format),
        access_log=False,
    )
