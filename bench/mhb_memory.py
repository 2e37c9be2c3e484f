"""Memory of the MHB model: peak RSS of a fit, artifact bytes, peak RSS of loading and scoring.

Two cases (float32 training embeddings, Gaussian classes):

* ``hostile``: 25 classes x 2 records at d=1024 (a ~200 KB request body): the case that
  drove the recommender to 1.4 GB when every class kept a dense d x d covariance;
* ``normal``: 10 classes x 2,000 records at d=128.

Each phase runs in a fresh child process so peaks do not mix: ``fit`` (fit_mhb + dump_model;
what the ``fit-mhb`` operation does) and ``load`` (load_model + scoring one record; what
the API's assessor does for the first production record of a set). Printed per phase:
peak RSS of the child, and the growth of the peak over the child's baseline (interpreter,
numpy, the training data) which is what the model costs.

Run: ``python bench/mhb_memory.py`` (``--cases hostile``). No timings are asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

CASES = {"hostile": (25, 2, 1024), "normal": (10, 2_000, 128)}
"""name -> (classes, records per class, dimension)."""


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _training(case: str) -> tuple[np.ndarray, np.ndarray]:
    classes, per_class, dimension = CASES[case]
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dimension)) * 3.0
    labels = np.repeat(np.arange(classes), per_class)
    data = centres[labels] + rng.normal(size=(labels.size, dimension))
    return data.astype(np.float32), np.array([f"c{k}" for k in labels], dtype=object)


def _child(case: str, phase: str, artifact: str) -> dict[str, float]:
    from chroma.scoring import dump_model, fit_mhb, load_model, score_mhb

    data, labels = _training(case)
    baseline = _peak_mib()
    if phase == "fit":
        blob = dump_model(fit_mhb(data, labels))
        Path(artifact).write_bytes(blob)
        return {"peak_mib": _peak_mib(), "growth_mib": _peak_mib() - baseline,
                "model_bytes": float(len(blob))}
    model = load_model(Path(artifact).read_bytes())
    score_mhb(model, data[:1], labels[:1])
    return {"peak_mib": _peak_mib(), "growth_mib": _peak_mib() - baseline}


def _run(case: str, phase: str, artifact: str) -> dict[str, float]:
    answer = subprocess.run(
        [sys.executable, __file__, "--child", case, phase, artifact],
        check=True, capture_output=True, text=True,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--child", nargs=3, metavar=("CASE", "PHASE", "ARTIFACT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    print(machine_info(("numpy", "scipy")))
    print("\n| case | C x n_c x d | fit peak RSS (growth) | model bytes "
          "| load+score peak RSS (growth) |\n|---|---|---|---|---|")
    for case in args.cases:
        with tempfile.TemporaryDirectory() as folder:
            artifact = str(Path(folder) / "model.mhb")
            fit = _run(case, "fit", artifact)
            load = _run(case, "load", artifact)
        classes, per_class, dimension = CASES[case]
        print(f"| {case} | {classes} x {per_class:,} x {dimension} "
              f"| {fit['peak_mib']:.0f} MiB (+{fit['growth_mib']:.0f}) "
              f"| {fit['model_bytes'] / 2**20:.2f} MiB "
              f"| {load['peak_mib']:.0f} MiB (+{load['growth_mib']:.0f}) |")


if __name__ == "__main__":
    main()
