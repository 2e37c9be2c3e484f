"""``python -m tests.qdrant_standin --host 127.0.0.1 --port 6333``: serve the Qdrant
stand-in (tests only; see the package docstring)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from tests.qdrant_standin.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.qdrant_standin",
        description="A Qdrant REST stand-in backed by qdrant-client local mode (tests only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--path", default=os.environ.get("QDRANT_STANDIN_PATH") or None,
                        help="persist in this directory (default: in memory)")
    parser.add_argument("--api-key", default=os.environ.get("QDRANT__SERVICE__API_KEY") or None,
                        help="require this api-key header (default: none)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(path=args.path, api_key=args.api_key), host=args.host,
                port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
