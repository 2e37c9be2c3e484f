"""``chroma-api.yaml``: the OpenAPI 3.1 contract, generated from the app and checked in.

A test regenerates it and compares, so the served app and the file cannot drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chroma.api.app import create_app

__all__ = ["render_contract", "write_contract"]


def current_schema() -> dict[str, Any]:
    return create_app().openapi()


def render_contract() -> str:
    return yaml.safe_dump(current_schema(), sort_keys=False, allow_unicode=True, width=100)


def write_contract(path: Path) -> None:
    path.write_text(render_contract(), encoding="utf-8")
