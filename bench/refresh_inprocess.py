"""A labelling-queue refresh in one process: full, incremental and with nothing new.

``bench/refresh.py`` times the operations of a running ``chroma run``; this one calls
``chroma.labelling.runs.recommend_one`` directly on its own embedded PostgreSQL and local
store (the records committed through the group committer, as ``/log`` does), so a
profiler sees the whole run and versions of the code can be compared in one invocation:
``--code DIR`` (repeatable) runs the same rounds with ``DIR`` first on ``PYTHONPATH``
(e.g. main's ``components`` from ``git archive main components | tar -x -C /tmp/main``),
interleaved with this checkout's code, in one child process per version.

Each child logs ``--training`` x 128 training and ``--production`` production records (14
clusters, 2 of them never trained) and times a full refresh; then, per round and child in
turn, ``--incremental`` new production records are committed and a ``recommend`` scores
them (target <= 2 s for 10,000), and a ``recommend`` with nothing new follows (target:
well under a second). At the end every child hashes its whole queue (order, scores,
signals): the versions must agree. Medians per version, with the load average of every run, and the
CPU time of the benchmarking process during each run (all its threads; PostgreSQL's own
work not included): on a busy machine the wall time is mostly waiting for a core.

    .venv/bin/python bench/refresh_inprocess.py [--training 20000] [--production 100000]
        [--incremental 10000] [--rounds 5] [--code /tmp/main/components]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import LineChild

DIM = 128
CHUNK = 50_000


class Records:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(size=(14, DIM)) * 3

    def batch(self, dataset: str, split: str, n: int, first: int) -> Any:
        from chroma.ingest import LogBatch
        from chroma.storage import RecordBatch

        classes = 12 if split == "training" else 14
        labels = self.rng.integers(0, classes, n)
        vectors = (self.centres[labels] + self.rng.normal(size=(n, DIM))).astype(np.float32)
        names = [f"class-{c}" for c in labels]
        records = RecordBatch(
            ids=[f"{dataset}-{first + i}" for i in range(n)], embeddings=vectors,
            input_uris=[None] * n, inference_classes=names,
            label_classes=names if split == "training" else [None] * n,
            scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
            dataset=dataset, split=split)
        return LogBatch(embedding_set=ES, embedding_set_key=key(), dataset=dataset,
                        split=split, records=records)


ES = {"model": "refresh-inprocess", "dim": DIM}


def key() -> str:
    from chroma.keys import embedding_set_key

    return embedding_set_key(ES)


def serve(args: argparse.Namespace) -> None:
    """The child: one version of the code, its own PostgreSQL and store; runs what the
    parent writes on stdin ("setup", "incremental", "nothing new") and answers one JSON
    line each."""
    import chroma
    from chroma.catalog import Catalog, Database, apply_migrations
    from chroma.catalog.embedded import start_embedded_postgres
    from chroma.ingest import GroupCommitter
    from chroma.labelling.runs import LabellingJob, recommend_one
    from chroma.settings import Settings
    from chroma.storage import FileStore

    work = Path(tempfile.mkdtemp(prefix="chroma-refresh-inprocess-"))
    atexit.register(shutil.rmtree, work, True)  # after PostgreSQL stops (registered later)
    dsn = start_embedded_postgres(work / "postgres")
    apply_migrations(dsn)
    db = Database(dsn)
    db.open()
    catalog, store = Catalog(db), FileStore(str(work / "store"))
    committer, records, settings = GroupCommitter(catalog, store), Records(), Settings()
    logged = args.production

    def run(full: bool) -> dict[str, Any]:
        began, cpu = time.perf_counter(), time.process_time()
        result = recommend_one(LabellingJob(catalog, store, settings, key()), full=full)
        return {"seconds": time.perf_counter() - began, "cpu": time.process_time() - cpu,
                "scored": result.get("scored", 0), "knn": result.get("knn"),
                "load": os.getloadavg()[0]}

    for line in sys.stdin:
        command = line.strip()
        if command == "setup":
            for split, dataset, total in (("training", "train", args.training),
                                          ("production", "prod", args.production)):
                for first in range(0, total, CHUNK):
                    committer.commit([records.batch(dataset, split,
                                                    min(CHUNK, total - first), first)])
            answer = {**run(full=True), "code": str(Path(chroma.__file__).parent)}
        elif command == "digest":
            answer = {"digest": queue_digest(catalog)}
        elif command == "incremental":
            committer.commit([records.batch("prod", "production", args.incremental, logged)])
            logged += args.incremental
            answer = run(full=False)
        else:
            answer = run(full=False)
        print(json.dumps(answer), flush=True)
    db.close()


def queue_digest(catalog: Any) -> str:
    """A hash of the whole queue in its order: every field a run writes but the time
    the records were logged (it differs between children). Numbers as floats: the JSON
    of a signal may say 1 or 1.0 for the same value."""
    import hashlib

    digest = hashlib.sha256()
    for entry in catalog.queue.page(key(), limit=10_000_000):
        signals = sorted((name, float(v)) for name, v in entry.signals.items())
        raw = sorted((name, float(v)) for name, v in entry.raw_signals.items())
        digest.update(repr((entry.dataset, entry.record_id, float(entry.score),
                            float(entry.percentile), entry.verdict, signals, raw,
                            entry.input_uri, entry.inference_class, entry.tags)).encode())
    return digest.hexdigest()


def code_child(code: str | None, argv: list[str]) -> LineChild:
    """This script serving ``argv``'s runs, with the ``chroma`` package of ``code`` (a
    components folder) or of this checkout."""
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, env.get("PYTHONPATH")]))
    return LineChild(code or "this checkout", [sys.executable, __file__, "--serve", *argv],
                     env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--production", type=int, default=100_000)
    parser.add_argument("--incremental", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code", action="append", default=[],
                        help="another version's components dir (repeatable)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    print(machine_info(("numpy", "pyarrow", "psycopg")))
    argv = [f"--training={args.training}", f"--production={args.production}",
            f"--incremental={args.incremental}"]
    children = [code_child(code, argv) for code in [None, *args.code]]
    times: dict[str, dict[str, list[float]]] = {c.name: {} for c in children}
    try:
        for child in children:  # one at a time: a full refresh is minutes of both cores
            full = child.ask("setup")
            times[child.name]["full"] = [full["seconds"]]
            print(f"{child.name}: code {full['code']}\n  full refresh of "
                  f"{args.production:,}: {full['seconds']:.2f} s (CPU {full['cpu']:.2f} s)  "
                  f"kNN {full['knn']}  load {full['load']:.1f}", flush=True)
        for round_ in range(args.rounds):
            for child in children[::1 if round_ % 2 == 0 else -1]:
                for run in ("incremental", "nothing new"):
                    answer = child.ask(run)
                    times[child.name].setdefault(run, []).append(answer["seconds"])
                    times[child.name].setdefault(f"{run} CPU", []).append(answer["cpu"])
                    print(f"round {round_ + 1} {child.name}: {run:>11} "
                          f"{answer['seconds']:6.2f} s (CPU {answer['cpu']:5.2f} s)  "
                          f"scored {answer['scored']:>6,}  load {answer['load']:.1f}",
                          flush=True)
        digests = {child.name: child.ask("digest")["digest"] for child in children}
        print("queue after the last round: " + (
            "the same in every version (order, scores, signals)"
            if len(set(digests.values())) == 1 else f"DIFFERS: {digests}"), flush=True)
    finally:
        for child in children:
            child.close()
    print(f"\nmedians ({args.rounds} rounds; {args.training:,} training, {args.production:,} "
          f"production, {args.incremental:,} new per incremental run, {DIM}-d):")
    for name, runs in times.items():
        figures = "  ".join(f"{run} {median(values):.2f} s" for run, values in runs.items())
        print(f"  {name}: {figures}")
    print(f"load average at the end: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
