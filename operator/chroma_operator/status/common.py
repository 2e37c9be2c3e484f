"""Pieces every status derivation shares: the clock, conditions, and the merge patch.

Owns: building a condition, keeping ``lastTransitionTime`` while a condition's status
does not change, and the JSON merge patch from the recorded status to a new one. Pure;
called by the sibling modules and by ``chroma_operator.reconcile``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from chroma_operator.status_types import Condition

Body = dict[str, Any]

__all__ = ["Body", "condition", "merge_conditions", "now_rfc3339", "status_patch"]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str) -> Condition:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def merge_conditions(
    previous: list[Condition] | None, current: list[Condition], now: str
) -> list[Condition]:
    """``current`` with ``lastTransitionTime`` kept from ``previous`` unless status changed."""
    before = {cond.get("type"): cond for cond in previous or []}
    out: list[Condition] = []
    for cond in current:
        old = before.get(cond["type"])
        stamp = now
        if old and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamp = old["lastTransitionTime"]
        out.append({**cond, "lastTransitionTime": stamp})
    return out


def status_patch(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> Body:
    """A JSON merge patch from ``previous`` to ``current``: keys that disappeared become
    None (deleted), so a stale ``components.qdrant`` does not outlive its StatefulSet."""
    out: Body = dict(current)
    for key, old in (previous or {}).items():
        if key not in current:
            out[key] = None
        elif isinstance(old, dict) and isinstance(current[key], dict):
            out[key] = status_patch(old, current[key])
    return out
