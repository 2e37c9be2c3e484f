"""The operator with a failpoint: a test-only entry point that crashes it on purpose.

Owns: the failpoints the restart-safety tests need, each installed by wrapping one
method of the operator's own classes before ``chroma_operator.main.main`` runs. The
operator's code has no test hook: the crash is injected from here.

    python -m tests.controlplane.failpoints FAILPOINT [chroma-operator args...]

Failpoints:
  after-job-create  exit with code ``EXIT_CODE`` right after the API server created a Job,
                    before the operator records anything about it (the IndexJob's status)

Started by ``envtest.OperatorProcess`` when given ``failpoint=``; run from the repository
root (the tests' working directory), so ``tests`` is importable.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from chroma_operator import main as operator_main
from chroma_operator.kube import Kube

EXIT_CODE = 17
Body = dict[str, Any]


def _exit_after_job_create() -> None:
    """Wrap ``Kube.create``: once a Job has been created, die without cleanup."""
    create = Kube.create

    @functools.wraps(create)
    def create_then_exit(self: Kube, obj: Body) -> tuple[Body, bool]:
        created_obj, created = create(self, obj)
        if created and obj.get("kind") == "Job":
            print(f"failpoint after-job-create: exiting with {EXIT_CODE}", flush=True)
            os._exit(EXIT_CODE)
        return created_obj, created

    Kube.create = create_then_exit  # type: ignore[method-assign]


FAILPOINTS: dict[str, Callable[[], None]] = {
    "after-job-create": _exit_after_job_create,
}


def main(argv: list[str] | None = None) -> None:
    """Install the failpoint named by the first argument, then run the operator."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in FAILPOINTS:
        raise SystemExit(f"usage: failpoints {{{','.join(FAILPOINTS)}}} [operator args...]")
    FAILPOINTS[args[0]]()
    operator_main.main(args[1:])


if __name__ == "__main__":
    main()
