"""Entry point of the ``chroma-operator`` console script.

Owns: the command line (which namespaces to serve, liveness endpoint, verbosity) and
starting kopf with the handlers of ``chroma_operator.handlers``. Run in a pod by the
Helm chart, and as a subprocess by the control-plane tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chroma-operator",
        description="Reconciles ChromaCluster, Dataset and IndexJob resources (chroma.dev).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="serve this namespace (repeatable; globs allowed); default: every namespace",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (default)"
    )
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--peering",
        action="store_true",
        help="coordinate with other instances through kopf peering (needs its CRDs); "
        "default: standalone, one replica",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the operator until SIGINT/SIGTERM."""
    args = parse_args(argv)
    from chroma_operator import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=not args.peering,
            liveness_endpoint=args.liveness,
        )
    )


if __name__ == "__main__":
    main()
