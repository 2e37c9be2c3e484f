"""ChromaCluster reconciler: make the children match the spec, then record what is true.

Owns: the order of work for a cluster (create the generated Secrets when absent, never
reading or overwriting them; apply every child pinned to the version it was read at,
report creations and repaired drift, delete what the spec turned off, derive and write
status, turn a ``chroma.dev/operation`` annotation into one IndexJob).
Idempotent: a rerun after a crash, a restart or a re-list finds the objects and patches
them. Uses ``Kube`` for I/O, the pure builders of ``chroma_operator.manifests`` and the
pure ``chroma_operator.status``; called by ``chroma_operator.handlers``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from chroma_operator import constants as c
from chroma_operator import status as st
from chroma_operator.kube import Conflict, Kube
from chroma_operator.manifests import (
    InvalidOperationRequest,
    OperationRequest,
    build_children,
    build_generated_secrets,
    build_requested_indexjob,
    names,
    operator_api_key,
)
from chroma_operator.reconcile.outcome import Body, Outcome, lock_for, record
from chroma_operator.status_types import ClusterPhase, ClusterStatus, LastOperation

__all__ = ["owner_cluster_name", "reconcile_cluster"]

_APPLY_ATTEMPTS = 5
"""Reads and pinned applies of one child before applying regardless (it keeps changing)."""


def _ref(obj: Body) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


def _owned_by(obj: Body, owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or [])


def new_key() -> str:
    """A random API key: 43 URL-safe characters (DESIGN §11 asks for at least 32)."""
    return secrets.token_urlsafe(32)


def reconcile_cluster(
    kube: Kube,
    body: Body,
    out: Outcome | None = None,
    *,
    operator_namespace: str | None = None,
    operator_key_seed: str | None = None,
    key_factory: Callable[[], str] = new_key,
) -> Outcome:
    """Create missing generated Secrets, apply every child, remove switched-off ones,
    derive and write status.

    ``body`` only names the cluster: the current object is read again under a per-cluster
    lock, so concurrent triggers (kopf handlers, child events, the timer) run one at a
    time and each sees the status the previous one wrote. ``out`` (given by the caller)
    keeps what was done so far even when a later API call fails, so its Events are
    still posted.
    """
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    out = out if out is not None else Outcome()
    with lock_for("cluster", ns, name):
        # Re-read under the lock: a body that waited here may predate the last status write.
        fresh = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return out
        operator_key = operator_api_key(operator_key_seed, fresh) if operator_key_seed else None
        _create_generated_secrets(kube, fresh, key_factory, operator_key, out)
        wanted, unwanted = build_children(fresh, operator_namespace)
        applied = _apply_children(kube, fresh, wanted, out)
        _delete_unwanted(kube, fresh, unwanted, out)
        n = names(name)
        children = {
            "api": applied.get(("Deployment", n["api"])),
            "workers": applied.get(("Deployment", n["workers"])),
            "qdrant": applied.get(("StatefulSet", n["qdrant"])),
        }
        status = st.cluster_status(fresh, children, st.now_rfc3339())
        last = _handle_operation_annotation(kube, fresh, out)
        if last is not None:
            status["lastOperation"] = last
        _note_phase_change(out, fresh, status)
        return record(kube, fresh, out, status, prune=True)


def _apply_children(
    kube: Kube, cluster: Body, wanted: list[Body], out: Outcome
) -> dict[tuple[str, str], Body]:
    """Apply each wanted child; (kind, name) -> the child as applied."""
    meta = cluster["metadata"]
    # Spec already handled once: any change to a child now is drift being repaired.
    seen_spec = (cluster.get("status") or {}).get("observedGeneration") == meta.get("generation")
    applied: dict[tuple[str, str], Body] = {}
    for obj in wanted:
        before, after = _apply_observed(kube, obj)
        applied[(obj["kind"], obj["metadata"]["name"])] = after
        _note_apply(out, obj, before, after, seen_spec)
    return applied


def _create_generated_secrets(
    kube: Kube, cluster: Body, key_factory: Callable[[], str], operator_key: str | None,
    out: Outcome,
) -> None:
    """Create-if-absent: a Secret that exists (generated earlier, or edited by hand to
    rotate keys) is never read nor overwritten. One deleted by hand comes back with a
    new key on the next reconcile."""
    for secret in build_generated_secrets(cluster, key_factory, operator_key):
        if kube.create_if_absent(secret):
            out.note("Created", f"generated {_ref(secret)}")


def _note_apply(
    out: Outcome, obj: Body, before: Body | None, after: Body, seen_spec: bool
) -> None:
    """Created / Updated for a new spec; Recreated / DriftRepaired (Warning) otherwise."""
    if before is None:
        if seen_spec:
            out.note("Recreated", f"recreated deleted {_ref(obj)}", "Warning")
        else:
            out.note("Created", f"created {_ref(obj)}")
        return
    changed = before["metadata"].get("resourceVersion") != after["metadata"].get(
        "resourceVersion"
    ) and _spec_like(before) != _spec_like(after)
    if changed and seen_spec:
        out.note("DriftRepaired", f"restored {_ref(obj)} to the spec", "Warning")
    elif changed:
        out.note("Updated", f"applied spec to {_ref(obj)}")


def _delete_unwanted(
    kube: Kube, cluster: Body, unwanted: list[tuple[str, str, str]], out: Outcome
) -> None:
    """Delete the children the spec turned off, when this cluster owns them."""
    meta = cluster["metadata"]
    for api_version, kind, child in unwanted:
        existing = kube.get(api_version, kind, meta["namespace"], child)
        if existing is not None and _owned_by(existing, meta["uid"]):
            kube.delete(api_version, kind, meta["namespace"], child)
            out.note("Deleted", f"deleted {kind} {child}: no longer in the spec")


def _note_phase_change(out: Outcome, cluster: Body, status: ClusterStatus) -> None:
    previous = (cluster.get("status") or {}).get("phase")
    if previous != status["phase"]:
        out.note(
            "PhaseChanged",
            f"phase {previous or 'None'} -> {status['phase']}: {status['message']}",
            "Warning" if status["phase"] == ClusterPhase.DEGRADED else "Normal",
        )


def _apply_observed(kube: Kube, obj: Body) -> tuple[Body | None, Body]:
    """Apply ``obj``; return the child as it was just before the apply, and after.

    The apply carries the resourceVersion the child was read at, so a hand edit landing
    between the read and the apply fails it (409) and it is read again: the edit is then
    seen and reported (DriftRepaired), not silently undone by an apply that compared
    against the older read."""
    meta = obj["metadata"]
    for _ in range(_APPLY_ATTEMPTS):
        before = kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if before is None:
            return None, kube.apply(obj)
        pinned = {**obj, "metadata": {**meta,
                                      "resourceVersion": before["metadata"]["resourceVersion"]}}
        try:
            return before, kube.apply(pinned)
        except Conflict:
            continue
    return before, kube.apply(obj)  # changing under us on every try: apply regardless


def _spec_like(obj: Body) -> Any:
    """The part of an object whose change means "the operator changed something"."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")} | {
        "labels": obj["metadata"].get("labels"),
    }


def _handle_operation_annotation(
    kube: Kube, cluster: Body, out: Outcome
) -> LastOperation | None:
    """``chroma.dev/operation`` -> exactly one IndexJob, then the annotation is removed.

    Returns what ``status.lastOperation`` should say (the recorded one when there is no
    annotation). The IndexJob's name is a hash of the cluster uid and the annotation
    value, so a crash between creating it and removing the annotation re-finds it
    instead of adding one.
    """
    meta = cluster["metadata"]
    value = (meta.get("annotations") or {}).get(c.ANNOTATION_OPERATION)
    if not value:
        last: LastOperation | None = (cluster.get("status") or {}).get("lastOperation") or None
        return last
    try:
        request = OperationRequest.parse(value)
    except InvalidOperationRequest as exc:
        out.note("InvalidOperation", str(exc), "Warning")
        last = {"request": value, "error": str(exc)}
    else:
        indexjob, created = kube.create(build_requested_indexjob(cluster, request))
        name = indexjob["metadata"]["name"]
        if created:
            out.note("OperationRequested", f"created IndexJob {name} for {value}")
        last = {"request": value, "indexJob": name, "requestedAt": st.now_rfc3339()}
    kube.patch(
        c.API_VERSION,
        c.CLUSTER_KIND,
        meta["namespace"],
        meta["name"],
        {"metadata": {"annotations": {c.ANNOTATION_OPERATION: None}}},
    )
    return last


def owner_cluster_name(child: Body) -> str | None:
    """The ChromaCluster a child belongs to (owner reference first, label second)."""
    label = (child["metadata"].get("labels") or {}).get(c.LABEL_CLUSTER)
    for ref in child["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.CLUSTER_KIND and ref.get("apiVersion", "").startswith(c.GROUP):
            return str(ref["name"])
    return label
