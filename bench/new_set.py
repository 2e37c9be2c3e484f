"""A new embedding set's bulk load: how long after the last record's 201 a search answers it.

The "last record searchable" figure of ``bench/peers.py`` (same data, same client calls:
``log_many`` of 20% training then 80% production, Arrow bulk, into a set with no index
yet; a k=10 search for the last record's vector every 10 ms), alone and quick, with
``--baseline DIR`` running another checkout's ``chroma run`` (``DIR/.venv/bin/chroma``)
alternately with this one ``--runs`` times each, medians side by side. Each run starts
its own ``chroma run`` in a temporary folder. The load average is printed with every
figure: on a shared machine it decides most of it. After each run the phases of the
set's first index run are printed from its log (``--phases``): the fill in place, the
child's fill (pages read from the catalog and the store, points fed to the child and
its tail) and the graph build, with the wall clock of each line.

    .venv/bin/python bench/new_set.py [--records 100000] [--training-only] [--runs 3]
        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import start_chroma_run
from peers import CLASSES, DIM, last_searchable, make_data

from chroma.client import Client

PHASE_MARKS = ("first fill of", "index version", "running index", "succeeded index",
               "running recommend")


def phases(log: Path, since: str) -> list[str]:
    """The first index run's phase lines of ``log`` (``since``: the acked wall clock)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [f"    {line[11:23]} {line.split(' [-] ', 1)[-1][:200]}" for line in lines
            if any(mark in line for mark in PHASE_MARKS)] + [f"    {since} last 201"]


def one_run(chroma: Path, records: int, training_only: bool,
            show_phases: bool = False) -> tuple[float | None, float]:
    """Seconds from the last 201 to the first answer holding the last record; ingest s."""
    workdir = Path(tempfile.mkdtemp(prefix="chroma-new-set-"))
    workdir.chmod(0o755)
    port = 21000 + os.getpid() % 1000
    system = start_chroma_run(workdir, port, chroma=chroma)
    vectors, _ = make_data(records, 1)
    n_train = records if training_only else records // 5
    ids = [f"r{i}" for i in range(records)]
    model = {"model": "new-set-bench", "dim": DIM}
    url = f"http://127.0.0.1:{port}"
    try:
        with Client(url, progress=False) as client, httpx.Client(base_url=url,
                                                                 timeout=60) as http:
            began = time.perf_counter()
            key = client.log_many(vectors[:n_train], embedding_set=model, dataset="train",
                                  split="training", ids=ids[:n_train],
                                  label_classes=[f"class-{i % CLASSES}"
                                                 for i in range(n_train)])["embedding_set_key"]
            if n_train < records:
                client.log_many(vectors[n_train:], embedding_set=model, dataset="prod",
                                split="production", ids=ids[n_train:],
                                inference_classes=[f"class-{i % CLASSES}"
                                                   for i in range(records - n_train)])
            acked = time.perf_counter()
            acked_at = time.strftime("%H:%M:%S")
            lag = last_searchable(http, key, vectors[-1], ids[-1], acked)
            if show_phases:  # once the fill has switched (or a minute passed)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and "switched to" not in (
                        workdir / "run.log").read_text(errors="replace"):
                    time.sleep(0.5)
                print("\n".join(phases(workdir / "run.log", acked_at)), flush=True)
            return lag, acked - began
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--training-only", action="store_true",
                        help="every record training (no recommend of the load beside)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--phases", action="store_true",
                        help="print the first index run's phase lines of each run's log")
    args = parser.parse_args()
    print(machine_info(("qdrant-edge-py", "numpy", "psycopg", "pyarrow")))
    codes = [("this checkout", Path(sys.executable).parent / "chroma")]
    if args.baseline is not None:
        codes.insert(0, (f"baseline {args.baseline}", args.baseline.resolve() / ".venv" /
                         "bin" / "chroma"))
    figures: dict[str, list[float]] = {label: [] for label, _ in codes}
    for _ in range(args.runs):
        for label, chroma in codes:
            before = os.getloadavg()[0]
            lag, ingest_s = one_run(chroma, args.records, args.training_only, args.phases)
            after = os.getloadavg()[0]
            shown = f"{lag:.1f} s" if lag is not None else "never (gave up)"
            print(f"[{label}] {args.records:,} x {DIM}: ingested in {ingest_s:.1f} s, last "
                  f"record searchable {shown} after its 201 (load {before:.1f} -> {after:.1f})",
                  flush=True)
            if lag is not None:
                figures[label].append(lag)
    print("\nmedians: " + " | ".join(
        f"{label}: {median(values):.1f} s ({len(values)} runs)" if values else f"{label}: -"
        for label, values in figures.items()))


if __name__ == "__main__":
    main()
