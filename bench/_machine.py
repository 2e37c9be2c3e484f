"""Shared helpers of the benchmarks: what machine this ran on, medians, and a GIL ticker."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata


def machine_info(packages: tuple[str, ...] = ()) -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
            memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    lines = [
        f"machine: {platform.node()} | {platform.system()} {platform.release()} | "
        f"{os.cpu_count()} cores | {cpu} | {memory}",
        f"python {platform.python_version()}" + (f" | {', '.join(versions)}" if versions else ""),
    ]
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def gil_ticker() -> Iterator[list[float]]:
    """Gaps (s) between the wake-ups of a thread that sleeps 1 ms at a time, while the
    block runs: the longest is how long something held the GIL (or the machine had no
    core for the thread). The thread is started and settled before the block."""
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    time.sleep(0.05)
    gaps.clear()
    try:
        yield gaps
    finally:
        stop.set()
        thread.join()
