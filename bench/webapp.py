"""The web app measured in a real browser (Debian's Chromium driven by Playwright).

* **Queue, time to first render**: from navigation start to the first ranked row in the
  DOM (a MutationObserver records ``performance.now()``), with a fresh browser context per
  run (nothing cached), on an embedding set of ``--production`` records (default 1M,
  logged as Arrow bulk). Baseline in the same invocation: the API call the page makes
  (``GET /recommendations?limit=50``) timed from Python. Also the next-page time after
  ``--deep`` clicks on "next" (cursor paging).
* **Map frame time**: ``requestAnimationFrame`` intervals while panning (mouse drags) the
  map of ``--map-points`` points (the API samples them: ``/ui/map?limit=N``); baseline in
  the same invocation: the same pan over 1,000 points.
* **Shipped assets**: bytes of each file under ``chroma/api/static/ui`` and gzipped.

Starts its own ``chroma run`` (temporary data dir, free port) unless ``--url`` names a
server; ``--data-dir DIR`` keeps (and reuses) the seeded data between invocations.

    .venv/bin/python bench/webapp.py [--production 1000000] [--runs 5]

Headless Chromium here draws WebGL with SwiftShader (on the CPU): frame times are those
of a machine without a GPU, an upper bound for a desktop.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from chroma.client import Client

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "components" / "chroma" / "api" / "static" / "ui"
CHROMIUM = os.environ.get("CHROMA_CHROMIUM", "/usr/bin/chromium")
MODEL = {"model": "webapp-bench", "version": "1"}
CLASSES = 10

FIRST_ROW = """
window.__firstRow = null;
new MutationObserver((_, observer) => {
  if (document.querySelector('[data-testid=queue-row]')) {
    window.__firstRow = performance.now();
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(data_dir / "bench-server.log", "ab")  # noqa: SIM115 - lives with the server
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "chroma"), "run", "--port", str(port),
         "--data-dir", str(data_dir / "chroma")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(1)
    process.terminate()
    raise RuntimeError("chroma run did not get ready in 180 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def seeded_key(url: str) -> str | None:
    for entry in httpx.get(f"{url}/api/v1/embeddingsets", timeout=30).json()["data"]:
        if entry["fields"] == MODEL:
            return str(entry["key"])
    return None


def seed(url: str, training: int, production: int, dimension: int) -> None:
    """Gaussian classes; production adds two classes training never saw (the queue's top)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(CLASSES + 2, dimension)).astype(np.float32)
    with Client(url, timeout=600, batch_size=50_000, progress=False) as client:
        labels = rng.integers(0, CLASSES, training)
        vectors = centres[labels] + rng.normal(0, 1, (training, dimension)).astype(np.float32)
        client.log_many(vectors, embedding_set=MODEL, dataset="bench-train", split="training",
                        ids=[f"t{i}" for i in range(training)],
                        label_classes=[str(c) for c in labels])
        chunk = 100_000
        for start in range(0, production, chunk):
            n = min(chunk, production - start)
            truth = rng.integers(0, CLASSES + 2, n)
            vectors = centres[truth] + rng.normal(0, 1, (n, dimension)).astype(np.float32)
            client.log_many(vectors, embedding_set=MODEL, dataset="bench-prod",
                            split="production", ids=[f"p{start + i}" for i in range(n)],
                            inference_classes=[str(min(c, CLASSES - 1)) for c in truth])
            print(f"  logged {start + n:,} production records", flush=True)


def wait_for_queue(url: str, key: str, production: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        page = httpx.get(f"{url}/api/v1/recommendations", timeout=120,
                         params={"embedding_set_key": key, "limit": 1}).json()
        total = int(page.get("total", 0))
        if total >= production * 0.99:
            return
        time.sleep(5)
    raise RuntimeError(f"the queue holds {total:,} of {production:,} after {timeout} s")


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"


def bench_queue(browser: Any, url: str, key: str, runs: int, deep: int) -> dict[str, Any]:
    first, api_ms, paging = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        httpx.get(f"{url}/api/v1/recommendations", timeout=120,
                  params={"embedding_set_key": key, "limit": 50}).raise_for_status()
        api_ms.append((time.perf_counter() - started) * 1000)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.add_init_script(FIRST_ROW)
        page.goto(f"{url}/ui/queue?set={key}")
        page.wait_for_function("window.__firstRow !== null", timeout=120_000)
        first.append(page.evaluate("window.__firstRow"))
        for _ in range(deep):  # cursor paging: each page is one keyset query
            top = page.locator("[data-testid=queue-row]").first.get_attribute("data-id")
            clicked = page.evaluate("performance.now()")
            page.click("[data-testid=next]")
            page.wait_for_function(
                "id => document.querySelector('[data-testid=queue-row]')?.dataset.id !== id",
                arg=top, timeout=120_000)
            paging.append(page.evaluate("performance.now()") - clicked)
        context.close()
    return {"first": first, "api": api_ms, "paging": paging}


FRAMES = """
() => new Promise(resolve => {
  const times = [];
  const tick = t => { times.push(t); if (!window.__stopFrames) requestAnimationFrame(tick);
                      else resolve(times); };
  window.__stopFrames = false;
  requestAnimationFrame(tick);
  window.__frames = times;
})
"""


def bench_map(browser: Any, url: str, key: str, points: int, runs: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{url}/ui/map?set={key}&limit={points}")
    scatter = page.locator("[data-testid=scatter]")
    page.wait_for_function(
        "() => +document.querySelector('[data-testid=scatter]')?.dataset.pointCount > 0",
        timeout=600_000)
    drawn = int(scatter.get_attribute("data-point-count") or 0)
    load_s = time.perf_counter() - started
    box = page.locator("[data-testid=scatter] canvas").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    intervals: list[float] = []
    for _ in range(runs):
        page.evaluate("window.__stopFrames = true")
        # Not awaited here (a statement, not the promise): it resolves when the pan ends.
        page.evaluate(f"() => {{ window.__framesDone = ({FRAMES})(); }}")
        page.mouse.move(cx, cy)
        page.mouse.down()
        for step in range(60):  # a slow circle-ish pan, one mouse event per step
            angle = step / 60 * 2 * np.pi
            page.mouse.move(cx + 150 * np.cos(angle), cy + 100 * np.sin(angle))
        page.mouse.up()
        page.evaluate("window.__stopFrames = true")
        times = page.evaluate("window.__framesDone")
        intervals += [b - a for a, b in itertools.pairwise(times)]
    context.close()
    return {"drawn": drawn, "load_s": load_s, "intervals": intervals}


def asset_sizes() -> list[tuple[str, int, int]]:
    rows = []
    for path in sorted(ASSETS.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            rows.append((str(path.relative_to(ASSETS)), len(data), len(gzip.compress(data, 6))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument("--data-dir", type=Path, help="keep and reuse the seeded data here")
    parser.add_argument("--production", type=int, default=1_000_000)
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--dimension", type=int, default=32)
    parser.add_argument("--map-points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deep", type=int, default=5, help="next-page clicks per run")
    parser.add_argument("--queue-timeout", type=float, default=3600)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(machine_info(("playwright",)))
    print(f"load before: {os.getloadavg()}")
    process = None
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="chroma-webapp-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.url
    if url is None:
        process, url = start_server(workdir)
    try:
        key = seeded_key(url)
        if key is None:
            started = time.perf_counter()
            seed(url, args.training, args.production, args.dimension)
            print(f"seeded {args.production:,} production records in "
                  f"{time.perf_counter() - started:.0f} s")
            key = seeded_key(url)
        assert key is not None
        started = time.perf_counter()
        wait_for_queue(url, key, args.production, args.queue_timeout)
        print(f"queue ready ({time.perf_counter() - started:.0f} s after seeding)")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            queue = bench_queue(browser, url, key, args.runs, args.deep)
            print(f"load after queue: {os.getloadavg()}")
            mapped = bench_map(browser, url, key, args.map_points, max(1, args.runs // 2))
            # Baseline: the same pan over a map of 1,000 points (the browser's and the
            # machine's own frame cadence, with almost nothing to draw).
            small = bench_map(browser, url, key, 1_000, max(1, args.runs // 2))
            browser.close()
        print(f"load after map: {os.getloadavg()}")
        total = int(httpx.get(f"{url}/api/v1/recommendations", timeout=120, params={
            "embedding_set_key": key, "limit": 1}).json()["total"])
        print(f"\n| measure ({total:,} records in the queue) | median of {args.runs} |")
        print("|---|---|")
        print(f"| queue: first row rendered (cold context) | {median_ms(queue['first'])} |")
        print(f"| baseline: the page's API call alone | {median_ms(queue['api'])} |")
        if queue["paging"]:
            print(f"| queue: next page (cursor), {len(queue['paging'])} clicks | "
                  f"{median_ms(queue['paging'])} |")
        frames = sorted(mapped["intervals"])
        p95 = frames[int(len(frames) * 0.95)] if frames else float("nan")
        print(f"| map: {mapped['drawn']:,} points drawn; page to drawn | "
              f"{mapped['load_s']:.1f} s |")
        print(f"| map: frame interval while panning ({len(frames)} frames) | median "
              f"{statistics.median(frames):.1f} ms, p95 {p95:.1f} ms |")
        base = sorted(small["intervals"])
        print(f"| baseline: the same pan over {small['drawn']:,} points ({len(base)} frames) | "
              f"median {statistics.median(base):.1f} ms, p95 "
              f"{base[int(len(base) * 0.95)]:.1f} ms |")
        print(f"| ratio, median frame interval {mapped['drawn']:,} / {small['drawn']:,} points "
              f"| {statistics.median(frames) / statistics.median(base):.2f} |")
        print("\n| asset | bytes | gzip |")
        print("|---|---|---|")
        sizes = asset_sizes()
        for name, size, packed in sizes:
            print(f"| {name} | {size:,} | {packed:,} |")
        print(f"| total | {sum(s for _, s, _ in sizes):,} | {sum(g for _, _, g in sizes):,} |")
        print(json.dumps({"first_render_ms": queue["first"], "api_ms": queue["api"],
                          "paging_ms": queue["paging"]}))
    finally:
        if process is not None:
            stop_server(process)


if __name__ == "__main__":
    main()
