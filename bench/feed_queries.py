"""The small catalog queries that run all the time, at a set's size: the catalog side of
``GET /api/v1/status`` (``index_freshness`` + ``feed_lag``, polled by dashboards and by
``bench/freshness.py`` every 0.25 s), ``Changes.latest_seq`` (every index and recommend
run, several times, under the lock the writers wait on) and
``Recommendations.training_files`` (every recommend run).

Sets up its own embedded PostgreSQL with ``--production`` + ``--training`` records of one
set (``bench/refresh_inprocess.py``'s records, through the group committer), the index
and the queue 1,000 changes behind the head (a running system's), then times each query
``--runs`` times: median wall and PostgreSQL's own CPU (its processes, from ``/proc``).
It only calls catalog methods that older code has too: to compare, run this file with
the baseline tree's interpreter (``/tmp/base/.venv/bin/python bench/feed_queries.py``),
in the same sitting.

    .venv/bin/python bench/feed_queries.py [--production 1000000] [--training 20000]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from refresh_inprocess import CHUNK, Records, key
from refresh_phases import postgres_cpu

import chroma
from chroma.catalog import Catalog, Database, apply_migrations
from chroma.catalog.embedded import start_embedded_postgres
from chroma.ingest import GroupCommitter
from chroma.storage import FileStore


def timed(call: Callable[[], Any], pgdata: Path, runs: int) -> tuple[float, float]:
    """Median wall and PostgreSQL CPU seconds of ``call``."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu, began = postgres_cpu(pgdata), time.perf_counter()
        call()
        walls.append(time.perf_counter() - began)
        cpus.append(postgres_cpu(pgdata) - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--production", type=int, default=1_000_000)
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    print(machine_info(("psycopg",)))
    print(f"code: {Path(chroma.__file__).resolve().parents[2]}")
    work = Path(tempfile.mkdtemp(prefix="chroma-feed-queries-"))
    atexit.register(shutil.rmtree, work, True)  # after PostgreSQL stops (registered later)
    pgdata = work / "postgres"
    dsn = start_embedded_postgres(pgdata)
    apply_migrations(dsn)
    db = Database(dsn)
    db.open()
    catalog = Catalog(db)
    committer = GroupCommitter(catalog, FileStore(str(work / "store")))
    records = Records()
    for split, dataset, total in (("training", "train", args.training),
                                  ("production", "prod", args.production)):
        for first in range(0, total, CHUNK):
            committer.commit([records.batch(dataset, split, min(CHUNK, total - first), first)])
    head = catalog.changes.latest_seq(key())
    catalog.changes.record_index_state(key(), collection="c", version=1,
                                       indexed_seq=head - 1_000,
                                       indexed_count=args.production + args.training)
    catalog.changes.mark_scored(key(), head - 1_000)  # the queue as far behind
    with db.transaction() as conn:
        conn.execute("ANALYZE")
    print(f"{args.training:,} training + {args.production:,} production records; medians of "
          f"{args.runs}")
    for name, call in (
            ("status (catalog side)",
             lambda: (catalog.index_freshness(), catalog.changes.feed_lag())),
            ("latest_seq", lambda: catalog.changes.latest_seq(key())),
            ("training_files", lambda: catalog.queue.training_files(key()))):
        wall, cpu = timed(call, pgdata, args.runs)
        print(f"{name:>22}: {wall * 1000:8.1f} ms wall, PostgreSQL CPU {cpu * 1000:6.0f} ms; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    db.close()


if __name__ == "__main__":
    main()
