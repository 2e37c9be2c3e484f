"""A labelling-queue refresh in one process: full, with nothing new, and incremental.

``bench/refresh.py`` times the operations of a running ``chroma run``; this one calls
``chroma.labelling.runs.recommend_one`` directly on its own embedded PostgreSQL and local
store (the records committed through the group committer, as ``/log`` does), so a
profiler sees the whole run and two versions of the code can be compared in one
invocation: run it once per version, e.g. main's code from an exported tree with
``PYTHONPATH=<tree>/components``, interleaved.

Prints, for ``--training`` x 128 training and ``--production`` production records (14
clusters, 2 of them never trained): the full refresh, a run with nothing new, and an
incremental run of ``--incremental`` new records, with the load average of each.

    .venv/bin/python bench/refresh_inprocess.py [--training 20000] [--production 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

import chroma
from chroma.catalog import Catalog, Database, apply_migrations
from chroma.catalog.embedded import start_embedded_postgres
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch

DIM = 128
ES = {"model": "refresh-inprocess", "dim": DIM}
KEY = embedding_set_key(ES)
CHUNK = 50_000


class Records:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(size=(14, DIM)) * 3

    def batch(self, dataset: str, split: str, n: int, first: int) -> LogBatch:
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
        return LogBatch(embedding_set=ES, embedding_set_key=KEY, dataset=dataset, split=split,
                        records=records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--production", type=int, default=100_000)
    parser.add_argument("--incremental", type=int, default=10_000)
    args = parser.parse_args()
    print(machine_info(("numpy", "pyarrow", "psycopg")))
    print(f"code: {Path(chroma.__file__).parent}")
    work = Path(tempfile.mkdtemp(prefix="chroma-refresh-inprocess-"))
    dsn = start_embedded_postgres(work / "postgres")
    apply_migrations(dsn)
    db = Database(dsn)
    db.open()
    catalog = Catalog(db)
    store = FileStore(str(work / "store"))
    committer = GroupCommitter(catalog, store)
    records = Records()
    for split, dataset, total in (("training", "train", args.training),
                                  ("production", "prod", args.production)):
        for first in range(0, total, CHUNK):
            committer.commit([records.batch(dataset, split, min(CHUNK, total - first), first)])
    settings = Settings()
    for run in ("full", "nothing new", "incremental"):
        if run == "incremental":
            committer.commit([records.batch("prod", "production", args.incremental,
                                            args.production)])
        began = time.perf_counter()
        result = recommend_one(LabellingJob(catalog, store, settings, KEY),
                               full=run == "full")
        seconds = time.perf_counter() - began
        print(f"{run:>12}: {seconds:7.2f} s  scored {result.get('scored', 0):>9,}  "
              f"kNN {result.get('knn')}  load {os.getloadavg()[0]:.1f}", flush=True)
    db.close()


if __name__ == "__main__":
    main()
