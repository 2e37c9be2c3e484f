#!/usr/bin/env python3
"""Generates the Helm chart's CRDs (charts/chroma/crds/) from the repository's crds/.

``crds/`` is the one hand-edited source of the CustomResourceDefinitions; the chart ships
byte-identical copies (Helm installs a chart's ``crds/`` folder as is). Run after editing
a CRD:

    python3 scripts/sync-chart-crds.py           # write the copies, remove stale ones
    python3 scripts/sync-chart-crds.py --check   # exit 1 and name what differs

``tests/unit/test_chart.py`` fails (and says to run this) when the copies differ.
Standard library only; touches nothing outside charts/chroma/crds/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "crds"
TARGET = REPO / "charts" / "chroma" / "crds"
PATTERN = "*.yaml"


def wanted(source: Path = SOURCE) -> dict[str, bytes]:
    """File name -> content of every chart CRD, as generated from ``source``."""
    return {p.name: p.read_bytes() for p in sorted(source.glob(PATTERN))}


def differences(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """What ``target`` lacks, has in excess, or holds differently; empty when in sync."""
    want = wanted(source)
    have = {p.name: p.read_bytes() for p in sorted(target.glob(PATTERN))}
    out = [f"missing {name}" for name in sorted(want.keys() - have.keys())]
    out += [f"stale {name}" for name in sorted(have.keys() - want.keys())]
    out += [f"differs {name}" for name in sorted(want.keys() & have.keys())
            if want[name] != have[name]]
    return out


def sync(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Make ``target`` hold exactly the generated CRDs; return what was changed."""
    changed = differences(source, target)
    target.mkdir(parents=True, exist_ok=True)
    want = wanted(source)
    for stale in sorted(target.glob(PATTERN)):
        if stale.name not in want:
            stale.unlink()
    for name, content in want.items():
        path = target / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the chart's CRDs are out of date")
    args = parser.parse_args(argv)
    rel = TARGET.relative_to(REPO)
    if args.check:
        problems = differences()
        for line in problems:
            print(f"{rel}: {line}", file=sys.stderr)
        if problems:
            print("run: python3 scripts/sync-chart-crds.py", file=sys.stderr)
        return 1 if problems else 0
    for line in sync():
        print(f"{rel}: {line} -> written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
