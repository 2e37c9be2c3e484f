"""Memory of an embedded ``chroma run``: RSS and PSS per process, idle and after a load.

Starts ``chroma run`` on a fresh data directory (its own PostgreSQL), waits until every
component is up and no operation is queued or running, then reads ``/proc/<pid>/
smaps_rollup`` of every process it owns: the supervisor, its children (API, workers, the
PostgreSQL watchdog) and the PostgreSQL server with its backends (which ``pg_ctl`` starts
in a session of its own, found through ``postmaster.pid``). Each figure is the median of
``--samples`` readings a second apart. RSS counts shared pages (libraries, PostgreSQL's
shared buffers) once per process; PSS splits them among the processes sharing them, so
the PSS sum is what the system really holds.

With ``--records N`` it then logs N training records (``--dim``, Arrow bulk path), waits
for the implicit operations (index, fit-mhb, recommend) to settle, and measures again.
``--production 0.8`` logs that share of them as production records instead (after the
training ones), as ``bench/peers.py`` does. ``--baseline DIR`` measures another checkout
(its own ``.venv``) in the same invocation, alternating with this one ``--pairs`` times,
and prints both sums side by side at the end.

    .venv/bin/python bench/footprint.py [--records 100000] [--dim 128] [--samples 5]
        [--production 0.8] [--baseline /tmp/base --pairs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

MIB = 1024.0


def start_system(workdir: Path, port: int, chroma: str) -> subprocess.Popen[bytes]:
    log = open(workdir / "run.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [chroma, "run", "--port", str(port), "--data-dir", str(workdir / "data")],
        env={**os.environ, "CHROMA_WORKER_POLL_S": "0.5"}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)


def wait_up(http: httpx.Client, proc: subprocess.Popen[bytes], workdir: Path) -> list[Any]:
    """The status components once every one is up."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "run.log").read_text()[-3000:])
        try:
            components = http.get("/api/v1/status").json()["components"]
            if components and all(c["state"] == "up" for c in components):
                return components
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError("chroma run did not come up")


def wait_idle(http: httpx.Client, quiet_s: float, timeout: float = 3600) -> None:
    """Until no operation has been queued or running for ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        ops = http.get("/api/v1/operations", params={"limit": 500}).json()["data"]
        if any(op["state"] in ("queued", "running") for op in ops):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > quiet_s:
            return
        time.sleep(0.5)
    raise RuntimeError("operations did not settle")


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(root: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) in KiB, or None once the process is gone."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    except (OSError, ValueError):
        return None
    return fields.get("Rss", 0), fields.get("Pss", 0)


KINDS = ("anonymous", "libraries", "mapped files", "shared memory")


def rss_by_kind(pid: int) -> dict[str, float] | None:
    """RSS (MiB) by kind of mapping: anonymous (heap, arrays, allocator pools, thread
    stacks), libraries (``.so``), mapped files (index segments, WAL), shared memory."""
    kinds = dict.fromkeys(KINDS, 0.0)
    kind = "anonymous"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            path = head[5].strip() if len(head) > 5 else ""
            kind = ("anonymous" if not path or path.startswith("[") else
                    "shared memory" if path.startswith(("/dev/zero", "/dev/shm", "/SYSV"))
                    else "libraries" if ".so" in Path(path).name else "mapped files")
        elif line.startswith("Rss:"):
            kinds[kind] += int(line.split()[1]) / MIB
    return kinds


def top_mappings(pid: int, count: int) -> list[tuple[float, float, str]]:
    """The ``count`` largest mappings of a process by RSS: (RSS MiB, PSS MiB, what), the
    anonymous ones summed per kind of pseudo-path ("[heap]", "[anon]", "[stack]")."""
    totals: dict[str, list[float]] = {}
    what = "[anon]"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            what = head[5].strip() if len(head) > 5 else "[anon]"
            if what.startswith("[stack:"):
                what = "[stack]"
            totals.setdefault(what, [0.0, 0.0])
        elif line.startswith(("Rss:", "Pss:")):
            totals[what][0 if line.startswith("Rss:") else 1] += int(line.split()[1]) / MIB
    ranked = sorted(((r, p, w) for w, (r, p) in totals.items()), reverse=True)
    return ranked[:count]


def print_top(rows: list[tuple[str, int, float, float]], count: int) -> None:
    for name, pid, _, _ in rows:
        if name.startswith("postgres") or pid <= 0 or count <= 0:
            continue
        print(f"  largest mappings of {name} (RSS / PSS MiB):")
        for rss, pss, what in top_mappings(pid, count):
            print(f"    {rss:8.1f} {pss:8.1f}  {what[-70:]}")


def print_kinds(rows: list[tuple[str, int, float, float]]) -> None:
    print(f"  {'RSS MiB by kind':<34} " + " ".join(f"{k:>13}" for k in KINDS))
    for name, pid, _, _ in rows:
        if name.startswith("postgres") or pid <= 0:
            continue
        kinds = rss_by_kind(pid)
        if kinds is not None:
            print(f"  {name[:34]:<34} " + " ".join(f"{kinds[k]:>13.1f}" for k in KINDS))


def describe(pid: int, names: dict[int, str], postmaster: int | None) -> str:
    if pid in names:
        return names[pid]
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    if pid == postmaster:
        return "postgres (postmaster)"
    if "pgwatch" in cmdline:
        return "postgres watchdog"
    if cmdline.startswith("postgres:"):
        return cmdline.strip()[:40]
    if " run " in f" {cmdline} " and "chroma" in cmdline:
        return "supervisor (chroma run)"
    return cmdline.strip()[:40]


def processes(root: int, data_dir: Path) -> list[int]:
    tree = children_of()
    pids = descendants(root, tree)
    postmaster = postmaster_pid(data_dir)
    if postmaster is not None and postmaster not in pids:
        pids += descendants(postmaster, tree)
    return pids


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure(root: int, data_dir: Path, names: dict[int, str], samples: int,
            top: int = 0) -> tuple[float, float]:
    """Print RSS and PSS per process (median of its readings over ``samples`` readings a
    second apart) and the sums (median of each reading's sum: a connection that closed
    and another that opened between readings are not both counted)."""
    readings: dict[int, list[tuple[int, int]]] = {}
    labels: dict[int, str] = {}
    sums: list[tuple[int, ...]] = []  # RSS, PSS; of which PostgreSQL; processes
    for i in range(samples):
        postmaster = postmaster_pid(data_dir)
        total = [0, 0, 0, 0, 0]
        for pid in processes(root, data_dir):
            label = labels.get(pid) or describe(pid, names, postmaster)
            figures = memory_kib(pid)
            if figures is None:
                continue
            labels[pid] = label
            readings.setdefault(pid, []).append(figures)
            total[0] += figures[0]
            total[1] += figures[1]
            total[4] += 1
            if label.startswith("postgres"):
                total[2] += figures[0]
                total[3] += figures[1]
        sums.append(tuple(total))
        if i + 1 < samples:
            time.sleep(1.0)
    rows = []
    for pid, values in readings.items():
        rss = statistics.median(v[0] for v in values) / MIB
        pss = statistics.median(v[1] for v in values) / MIB
        rows.append((labels[pid], pid, rss, pss))
    rows.sort(key=lambda r: -r[2])
    print(f"  {'process':<42} {'pid':>8} {'RSS MiB':>9} {'PSS MiB':>9}")
    for name, pid, rss, pss in rows:
        seen = len(readings[pid])
        note = f" ({seen} of {samples} readings)" if seen < samples else ""
        print(f"  {(name + note)[:42]:<42} {pid:>8} {rss:>9.1f} {pss:>9.1f}")
    median = [statistics.median(s[j] for s in sums) / MIB for j in range(4)]
    count = statistics.median(s[4] for s in sums)
    print(f"  {f'sum ({count:.0f} processes)':<42} {'':>8} {median[0]:>9.1f} {median[1]:>9.1f}")
    print(f"  {'  of which PostgreSQL':<42} {'':>8} {median[2]:>9.1f} {median[3]:>9.1f}")
    print_kinds(rows)
    print_top(rows, top)
    print(f"  load average {os.getloadavg()}", flush=True)
    return median[0], median[1]


def load(url: str, records: int, dim: int, production: float = 0.0) -> None:
    """``records`` clustered vectors: the first ``1 - production`` of them as training
    records with classes, the rest as production records."""
    import numpy as np

    from chroma.client import Client

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, dim)) * 3
    labels = rng.integers(0, len(centres), size=records)
    vectors = (centres[labels] + rng.normal(size=(records, dim))).astype(np.float32)
    classes = [f"class-{c}" for c in labels]
    training = records - int(records * production)
    model = {"model": "footprint-bench", "dim": dim}
    with Client(url, progress=False) as client:
        client.log_many(vectors[:training], embedding_set=model, dataset="train",
                        split="training", label_classes=classes[:training])
        if training < records:
            client.log_many(vectors[training:], embedding_set=model, dataset="prod",
                            split="production", inference_classes=classes[training:])


def run_once(chroma: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """One ``chroma run`` (``chroma``: its executable) measured idle and after the load;
    the (RSS, PSS) sums of each measurement."""
    sums: dict[str, tuple[float, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="chroma-footprint-"))
    port = 19000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    print(f"\n## {chroma}")
    system = start_system(workdir, port, chroma)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            components = wait_up(http, system, workdir)
            names: dict[int, str] = {}
            for c in components:  # one process may serve several components
                if c.get("pid"):
                    names[c["pid"]] = ",".join(filter(None, (names.get(c["pid"]), c["name"])))
            wait_idle(http, args.settle)
            print(f"\nidle, empty (after {args.settle:.0f} s without operations):")
            sums["idle"] = measure(system.pid, workdir / "data", names, args.samples, args.top)
            if args.records:
                began = time.perf_counter()
                load(url, args.records, args.dim, args.production)
                wait_idle(http, args.settle)
                what = ("training records" if not args.production else
                        f"records ({args.production:.0%} production)")
                print(f"\nafter {args.records:,} x {args.dim} {what} (logged and "
                      f"settled in {time.perf_counter() - began:.0f} s):")
                sums["after"] = measure(system.pid, workdir / "data", names, args.samples,
                                        args.top)
            if args.hold:
                print(f"holding {args.hold:.0f} s: {url}, data {workdir / 'data'}", flush=True)
                time.sleep(args.hold)
    finally:
        system.send_signal(signal.SIGTERM)
        try:
            system.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(system.pid, signal.SIGKILL)
            system.wait()
        shutil.rmtree(workdir, ignore_errors=True)  # ~300 MiB after 100k records
    return sums


def print_pairs(results: dict[str, list[dict[str, tuple[float, float]]]]) -> None:
    """Each version's sums per run, and the medians' ratio (this / baseline)."""
    print("\nsums (RSS / PSS MiB), per run:")
    for what in ("idle", "after"):
        medians = {}
        for name, runs in results.items():
            figures = [run[what] for run in runs if what in run]
            if not figures:
                continue
            listed = ", ".join(f"{rss:.0f} / {pss:.0f}" for rss, pss in figures)
            medians[name] = (statistics.median(f[0] for f in figures),
                             statistics.median(f[1] for f in figures))
            print(f"  {what:<6} {name:<9} {listed}")
        if len(medians) == 2:
            (b_rss, b_pss), (t_rss, t_pss) = medians["baseline"], medians["this"]
            print(f"  {what:<6} this / baseline (medians): RSS {t_rss / b_rss:.2f}x, "
                  f"PSS {t_pss / b_pss:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=0, help="then log this many")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--production", type=float, default=0.0,
                        help="share of the records logged as production (0.8: as peers.py)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds without operations before measuring")
    parser.add_argument("--top", type=int, default=0,
                        help="also print each chroma process's largest mappings")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="keep the system running this many seconds after the last "
                             "measurement (to look into its processes)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (with its .venv) to measure alternately")
    parser.add_argument("--pairs", type=int, default=1,
                        help="with --baseline: runs of each, alternating")
    args = parser.parse_args()

    print(machine_info(("numpy", "pyarrow", "qdrant-edge-py", "fastapi", "psycopg")))
    print(f"load average at start {os.getloadavg()}")
    this = str(Path(sys.executable).parent / "chroma")
    versions = {"this": this}
    if args.baseline is not None:
        versions = {"baseline": str(args.baseline / ".venv" / "bin" / "chroma"), **versions}
    results: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in versions}
    for _ in range(args.pairs if args.baseline is not None else 1):
        for name, chroma in versions.items():
            results[name].append(run_once(chroma, args))
    print_pairs(results)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
