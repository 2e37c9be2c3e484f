"""Where a full labelling-queue refresh spends its time, phase by phase, in one process.

Sets up like ``bench/refresh_inprocess.py`` (its records: 14 clusters, 128-d; its own
embedded PostgreSQL and local store; records committed through the group committer)
and runs one full ``recommend_one``. Each phase is timed by wrapping the function that
does it (the code under test is unchanged, only looked at):

* ``catalog read``: paging the production records out of PostgreSQL;
* ``parquet read``: reading their ``embedding`` and ``scores`` columns;
* ``training``: reading the training set; ``mhb fit``; ``reference`` (signals of a
  training sample, kNN included);
* ``knn``: the nearest training records (``CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN``
  decides exact or IVF: printed; the IVF build is timed separately, ``knn build``);
* ``mhb score``, ``signals`` (logged scores, signal maths), ``assess`` (normalise,
  combine, verdicts, as columns), ``rows`` (the rest of scoring a page: reading its
  logged scores, building the page written to the queue);
* ``queue write``: the upserts into PostgreSQL (a full refresh: its pages staged);
* ``queue swap``: a full refresh's new queue made the queue (indexes built, swapped in).

Phases nest (``reference`` contains some ``knn``; ``knn build`` is part of ``knn``):
the table shows each one's own wall and CPU seconds (CPU of the threads doing it: pages
are read and written in threads beside the scoring, and the kNN's blocks run in pool
threads, counted too), ``other`` is the rest of the process's CPU, and PostgreSQL's own
CPU (its processes, from ``/proc``) is printed apart.

With ``--incremental N``, N new production records are then logged (in batches of
``--batch``, as a steady writer would) and an incremental run scores them, followed by
a run with nothing new, each with the same table: the small catalog calls a run makes
besides its pages (``state``, ``latest seq``, ``deletions``, ``save state``...) are
timed too, so a cost that grows with the set, not the new records, shows up by name.

    .venv/bin/python bench/refresh_phases.py [--training 100000] [--production 1000000]
        [--incremental 10000] [--batch 100] [--rounds 1] [--full-rounds 1]

Another tree's code: ``PYTHONPATH=/tmp/base/components .venv/bin/python
bench/refresh_phases.py ...`` (its path is printed; phases it does not have are left out).
Before/after in one invocation: ``--baseline /tmp/base --pairs 2`` runs each tree's code
in a fresh process (its own PostgreSQL), base and this checkout taking turns, prints
each child's table and then the full refreshes' wall, process CPU and PostgreSQL CPU
per tree (medians) with the load around each run.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from refresh_inprocess import CHUNK, Records, key

import chroma.labelling.runs as runs
import chroma.labelling.scorer as scorer
import chroma.labelling.training as training
from chroma.catalog import Catalog, Database, apply_migrations
from chroma.catalog.changes import Changes
from chroma.catalog.embedded import start_embedded_postgres
from chroma.catalog.recommendations import Recommendations
from chroma.ingest import GroupCommitter
from chroma.scoring import ExactNearest, IvfNearest, nearest
from chroma.settings import Settings
from chroma.storage import FileStore

WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)
_stack = threading.local()


_lock = threading.Lock()


def _enter(name: str) -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def _leave(name: str, began: tuple[float, float], *, wall_counts: bool = True) -> None:
    """Adds the elapsed time to ``name`` and takes it off the enclosing phase. CPU is
    the calling thread's own (pages are read and written in threads while others are
    scored: the process's CPU would count theirs too)."""
    wall, cpu = time.perf_counter() - began[0], time.thread_time() - began[1]
    wall = wall if wall_counts else 0.0
    with _lock:
        WALL[name] += wall
        CPU[name] += cpu
        outer = getattr(_stack, "names", [])
        if outer:
            WALL[outer[-1]] -= wall
            CPU[outer[-1]] -= cpu


def timed(name: str, function: Callable[..., Any], *,
          wall_counts: bool = True) -> Callable[..., Any]:
    """``function`` timed as ``name``. ``wall_counts=False`` for work done in pool
    threads beside each other (the kNN's blocks): their CPU adds up, their wall time
    is the caller's."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = _stack.__dict__.setdefault("names", [])
        began = _enter(name)
        names.append(name)
        try:
            return function(*args, **kwargs)
        finally:
            names.pop()
            _leave(name, began, wall_counts=wall_counts)
    return wrapper


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the embedded PostgreSQL so far: the postmaster with its reaped
    children, and every live child (its backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        elif parent == postmaster:
            total += sum(int(v) for v in fields[11:13]) / tick
    return total


def instrument() -> None:
    runs.read_columns = timed("parquet read", runs.read_columns)
    runs.fit_mhb_of = timed("mhb fit", runs.fit_mhb_of)
    runs.fit_scoring_reference = timed("reference", runs.fit_scoring_reference)
    runs.assess_columns = timed("assess", runs.assess_columns)
    scorer.score_mhb = timed("mhb score", scorer.score_mhb)
    scorer.knn_inputs = timed("knn", scorer.knn_inputs)
    scorer.compute_signals = timed("signals", scorer.compute_signals)
    scorer.score_matrix = timed("signals", scorer.score_matrix)
    training.TrainingSet.load = classmethod(  # type: ignore[method-assign]
        timed("training", training.TrainingSet.load.__func__))  # type: ignore[attr-defined]
    for kind in (training.IvfNearest, training.ExactNearest):
        kind.__init__ = timed("knn build", kind.__init__)  # type: ignore[method-assign]
    # The kNN's blocks run in pool threads: their CPU is the kNN's too.
    for method in ("_search_list", "_best_in_list", "_at_or_above"):  # this code's, or older
        if hasattr(IvfNearest, method):
            setattr(IvfNearest, method,
                    timed("knn", getattr(IvfNearest, method), wall_counts=False))
    ExactNearest._closeness = timed(  # type: ignore[method-assign]
        "knn", ExactNearest._closeness, wall_counts=False)
    nearest._top_k = timed("knn", nearest._top_k, wall_counts=False)
    for kind, method, name in (
            (Changes, "latest_seq", "latest seq"), (Changes, "live_count", "live count"),
            (Changes, "deletions_since", "deletions"), (Changes, "index_state", "state"),
            (Recommendations, "state", "state"), (Recommendations, "save_state", "save state"),
            (Recommendations, "remove", "queue write"),
            (Recommendations, "training_files", "training files"),
            (Recommendations, "latest_mhb", "state")):
        setattr(kind, method, timed(name, getattr(kind, method)))
    Changes.record_columns_since = timed(  # type: ignore[method-assign]
        "catalog read", Changes.record_columns_since)
    Recommendations.upsert = timed("queue write", Recommendations.upsert)  # type: ignore
    # A full refresh stages its pages and swaps the new queue in at the end (the swap
    # its own phase: it runs after the scoring, nothing overlaps it).
    for method, name in (("begin_refresh", "queue write"), ("stage", "queue write"),
                         ("finish_refresh", "queue swap")):
        if hasattr(Recommendations, method):  # an older checkout upserts every page
            setattr(Recommendations, method, timed(name, getattr(Recommendations, method)))
    score_page = runs._score_page

    def rows_of(*args: Any, **kwargs: Any) -> Any:  # what _score_page leaves to itself
        return timed("rows", score_page)(*args, **kwargs)

    runs._score_page = rows_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=100_000)
    parser.add_argument("--production", type=int, default=1_000_000)
    parser.add_argument("--incremental", type=int, default=0,
                        help="new production records per incremental run after the full one")
    parser.add_argument("--batch", type=int, default=100, help="records per logged batch")
    parser.add_argument("--rounds", type=int, default=1, help="incremental runs")
    parser.add_argument("--full-rounds", type=int, default=1,
                        help="full refreshes in a row (the first into an empty queue, the "
                             "others over the queue the one before left)")
    parser.add_argument("--baseline", type=Path,
                        help="another tree (its components/ is used): base and this "
                             "checkout run in turns, each in a fresh process")
    parser.add_argument("--pairs", type=int, default=2, help="with --baseline: turns each")
    args = parser.parse_args()
    if args.baseline is not None:
        compare(args)
        return
    print(machine_info(("numpy", "pyarrow", "psycopg")))
    print(f"code: {Path(runs.__file__).parent.parent}")
    settings = Settings()
    print(f"approximate kNN from {settings.recommend_approximate_knn_min:,} training records; "
          f"in memory up to {settings.recommend_exact_knn_max:,}")
    work = Path(tempfile.mkdtemp(prefix="chroma-refresh-phases-"))
    atexit.register(shutil.rmtree, work, True)  # after PostgreSQL stops (registered later)
    dsn = start_embedded_postgres(work / "postgres")
    apply_migrations(dsn)
    db = Database(dsn)
    db.open()
    catalog = Catalog(db)
    store = FileStore(str(work / "store"))
    committer = GroupCommitter(catalog, store)
    records = Records()
    began = time.perf_counter()
    for split, dataset, total in (("training", "train", args.training),
                                  ("production", "prod", args.production)):
        for first in range(0, total, CHUNK):
            committer.commit([records.batch(dataset, split, min(CHUNK, total - first), first)])
    print(f"logged {args.training:,} training + {args.production:,} production in "
          f"{time.perf_counter() - began:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    instrument()
    pgdata = work / "postgres"
    job = runs.LabellingJob(catalog, store, settings, key())
    for round_ in range(args.full_rounds):
        job = runs.LabellingJob(catalog, store, settings, key())
        result = timed_run(job, pgdata, f"full refresh {round_ + 1}"
                           + (" (into an empty queue)" if round_ == 0 else ""), full=True)
    source = job.training().neighbours(settings.recommend_approximate_knn_min)
    print(f"kNN {'approximate (IVF)' if source.approximate else 'exact'}")
    logged = 0
    for _ in range(args.rounds if args.incremental else 0):
        for first in range(0, args.incremental, args.batch):
            committer.commit([records.batch("prod-new", "production",
                                            min(args.batch, args.incremental - first),
                                            logged + first)])
        logged += args.incremental
        job = runs.LabellingJob(catalog, store, settings, key())  # as each operation does
        result = timed_run(job, pgdata, f"incremental, {args.incremental:,} new")
        assert not result["full_refresh"], result
        job = runs.LabellingJob(catalog, store, settings, key())
        timed_run(job, pgdata, "nothing new")
    db.close()


_FULL = re.compile(r"^(full refresh \d+)[^:]*: ([\d.]+) s wall, ([\d.]+) s CPU, .*"
                   r"load ([\d.]+) -> ([\d.]+); PostgreSQL's own CPU ([\d.]+) s")


def compare(args: argparse.Namespace) -> None:
    """Base and this checkout in turns, each run a child process of this script."""
    print(machine_info(("numpy", "pyarrow", "psycopg")))
    own = Path(__file__).resolve().parent.parent / "components"
    trees = {"base": args.baseline.resolve() / "components", "new": own}
    child = list(sys.argv[1:])
    for flag in ("--baseline", "--pairs"):  # with their values
        if flag in child:
            del child[child.index(flag):child.index(flag) + 2]
    child = [a for a in child if not a.startswith(("--baseline=", "--pairs="))]
    figures: dict[str, list[tuple[str, float, float, float, float, float]]] = defaultdict(list)
    for pair in range(args.pairs):
        for name, components in trees.items():
            env = dict(os.environ, PYTHONPATH=str(components))
            print(f"\n=== {name} ({components}), turn {pair + 1}", flush=True)
            out = subprocess.run([sys.executable, __file__, *child], env=env, check=True,
                                 capture_output=True, text=True).stdout
            print(out, flush=True)
            for line in out.splitlines():
                if (m := _FULL.match(line)) is not None:
                    figures[name].append((m[1], *(float(v) for v in m.groups()[1:])))
    print("\nfull refreshes (medians over turns): wall s, process CPU s, PostgreSQL CPU s;"
          " each run: wall (load before -> after)")
    for name, runs_ in figures.items():
        for title in sorted({r[0] for r in runs_}):
            mine = [r for r in runs_ if r[0] == title]
            each = ", ".join(f"{r[1]:.1f} ({r[3]:.1f}->{r[4]:.1f})" for r in mine)
            print(f"{name:>5} {title}: {statistics.median(r[1] for r in mine):7.1f}"
                  f" {statistics.median(r[2] for r in mine):7.1f}"
                  f" {statistics.median(r[5] for r in mine):7.1f}   [{each}]")


def timed_run(job: runs.LabellingJob, pgdata: Path, title: str,
              full: bool = False) -> dict[str, Any]:
    """One ``recommend_one``, with its table of phases."""
    WALL.clear()
    CPU.clear()
    load_before = os.getloadavg()[0]
    began_postgres = postgres_cpu(pgdata)
    began, began_cpu = time.perf_counter(), time.process_time()
    result = runs.recommend_one(job, full=full)
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    postgres = postgres_cpu(pgdata) - began_postgres
    print(f"\n{title}: {wall:.3f} s wall, {cpu:.2f} s CPU, scored {result.get('scored', 0):,}, "
          f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}; PostgreSQL's own CPU "
          f"{postgres:.2f} s; run's phases {result.get('seconds')}")
    print(f"{'phase':>14} {'wall s':>8} {'cpu s':>8} {'share':>6}")
    for name in sorted(WALL, key=WALL.__getitem__, reverse=True):
        print(f"{name:>14} {WALL[name]:8.3f} {CPU[name]:8.3f} {WALL[name] / wall:6.1%}")
    print(f"{'other':>14} {'':>8} {cpu - sum(CPU.values()):8.3f}")
    print("(wall: of the thread doing the phase; pages are read and written beside the "
          "scoring, so walls overlap; CPU: each thread's own, the kNN's pool threads "
          "included)", flush=True)
    return result

if __name__ == "__main__":
    main()
