"""Memory kept by a training set's (dataset, record id) refs: a tuple per record (the
representation before ``TrainingRefs``, rebuilt here as the baseline) against
``chroma.labelling.training.TrainingRefs`` (dataset codes + an Arrow string array).

Memory, not time: tracemalloc (Python objects and numpy arrays) and Arrow's allocator
after the source rows are freed, as ``TrainingSet.load`` frees the catalog rows.

    .venv/bin/python bench/training_refs_memory.py [--records 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from chroma.labelling.training import TrainingRefs


def _tuples(source: list[tuple[str, str]]) -> Any:
    refs = [(sys.intern(d), r) for d, r in source]
    by_row = np.empty(len(refs), dtype=object)
    by_row[:] = refs  # the old search's per-row lookup array
    return refs, by_row


def _kept(build: Callable[[list[tuple[str, str]]], Any], records: int) -> tuple[float, float]:
    """MiB kept on the Python heap and by Arrow once only ``build``'s result is left."""
    gc.collect()
    tracemalloc.start()
    arrow_before = pa.total_allocated_bytes()
    source = [(["train", "prod-a", "prod-b"][i % 3], "".join(["rec-", f"{i:012d}"]))
              for i in range(records)]  # a fresh string per row, as the catalog's rows
    kept = build(source)
    del source
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    arrow = pa.total_allocated_bytes() - arrow_before
    del kept
    return heap / 2**20, arrow / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    print(machine_info(("numpy", "pyarrow")))
    TrainingRefs([("warm", "up")])  # pyarrow's lazy imports are not the refs' memory
    for name, build in (("tuple per record (before)", _tuples),
                        ("TrainingRefs columns", TrainingRefs)):
        heap, arrow = _kept(build, args.records)
        print(f"{args.records:,} refs, {name:26s}: Python heap {heap:6.1f} MiB  "
              f"Arrow {arrow:5.1f} MiB  total {heap + arrow:6.1f} MiB")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
