"""A first fill's exact scan (``chroma.index.filling.FillScan``): adding pages, searching.

Adds ``--records`` records (128-d, cosine) in pages of 5,000 as the index read-ahead
does, then times k=10 searches without and with a filter (split + class: ~1/60 of the
records pass, so the scan looks at many candidates). Medians of ``--runs``. Run with
``PYTHONPATH=<other checkout>/components`` to measure another version of the code in
the same invocation window.

    .venv/bin/python bench/fill_scan.py [--records 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from chroma.index.base import IndexedRecord, SearchFilter
from chroma.index.filling import FillScan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(machine_info(("numpy", "pyarrow")))
    pa.array(["warm"])  # pyarrow's one-time set-up (~1 s) is not the scan's: a worker has it
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.records, 128)).astype(np.float32)
    records = [IndexedRecord("prod" if i % 5 else "train", f"rec-{i}",
                             "production" if i % 5 else "training",
                             inference_class=f"class-{i % 12}", logged_at=float(i))
               for i in range(args.records)]
    adds = []
    for _ in range(args.runs):
        scan = FillScan(128, "cosine")
        began = time.perf_counter()
        for start in range(0, args.records, 5_000):
            scan.add(records[start:start + 5_000], vectors[start:start + 5_000])
        adds.append(time.perf_counter() - began)
    query = vectors[:1]
    for name, search_filter in (("k=10", None), ("k=10 filtered", SearchFilter(
            split="training", inference_classes=("class-3",)))):
        took = []
        for _ in range(args.runs):
            began = time.perf_counter()
            scan.search(query, 10, search_filter)
            took.append(time.perf_counter() - began)
        print(f"search {name}: {statistics.median(took) * 1000:.1f} ms")
    print(f"add {args.records} records in pages of 5000: {statistics.median(adds) * 1000:.0f} ms"
          f" | load {os.getloadavg()}")


if __name__ == "__main__":
    main()
