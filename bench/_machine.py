"""Shared helpers of the benchmarks: what machine this ran on, and medians."""

from __future__ import annotations

import os
import platform
import statistics
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
