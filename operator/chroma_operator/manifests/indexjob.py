"""Builders for one-shot operations: the IndexJob an annotation asks for, and its Job.

Owns: parsing the ``chroma.dev/operation`` annotation of a ChromaCluster, the
deterministic name of the IndexJob it requests (so a restarted operator re-creates
nothing), and the ``batch/v1`` Job that runs ``chroma op run KIND`` with the cluster's
image and configuration, its ``spec.params`` rendered as ``--param key=value`` arguments
that ``chroma op run`` reads back to the same values. Pure; called by
``chroma_operator.reconcile``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chroma_operator import constants as c
from chroma_operator.manifests.cluster import chroma_container
from chroma_operator.manifests.common import (
    Body,
    label_value,
    labels,
    owner_reference,
    pod_security_context,
    short_hash,
    tmp_volume,
)
from chroma_operator.manifests.spec import ClusterSpec, IndexJobSpec

MAX_NAME = 63


class InvalidOperationRequest(ValueError):
    """The ``chroma.dev/operation`` annotation cannot be understood."""


class InvalidParams(ValueError):
    """An IndexJob's ``spec.params`` cannot be passed to ``chroma op run`` unchanged."""


_PARAM_KEY = re.compile(c.PARAM_KEY_PATTERN)


def params_problem(params: Mapping[str, Any]) -> str | None:
    """Why ``params`` cannot become ``--param`` arguments, or None when they can.

    Only keys are checked: the CRD already limits the values (scalars, bounded strings)
    but cannot check keys, and a key holding ``=`` would be split in the wrong place."""
    bad = sorted(k for k in params if not _PARAM_KEY.fullmatch(k))
    if bad:
        return (
            f"spec.params keys {', '.join(repr(k) for k in bad)} are not valid: keys are 1-63 "
            "characters, letters, digits, _ . - and start with a letter or _"
        )
    return None


def param_value_text(value: Any) -> str:
    """The text after ``key=`` that ``chroma op run --param`` reads back as ``value``.

    The CLI reads a value as JSON when it is JSON and as plain text otherwise, so a
    string that is not JSON stays readable as it is (``ledoit_wolf``) and everything else
    is written as JSON: ``60``, ``0.5``, ``true``, and ``"60"`` for a string that would
    otherwise read back as a number."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        except RecursionError:
            pass  # deeply nested brackets: quote it, the CLI reads a JSON string back
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def param_args(params: Mapping[str, Any]) -> list[str]:
    """``--param key=value`` for every param, sorted by key (a stable Job spec)."""
    problem = params_problem(params)
    if problem:
        raise InvalidParams(problem)
    args: list[str] = []
    for key in sorted(params):
        args += ["--param", f"{key}={param_value_text(params[key])}"]
    return args


@dataclass(frozen=True)
class OperationRequest:
    """A parsed ``chroma.dev/operation`` annotation: ``KIND/EMBEDDING_SET[/REQUEST_ID]``."""

    operation: str
    embedding_set: str
    request_id: str = ""
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> OperationRequest:
        parts = [p.strip() for p in value.strip().split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidOperationRequest(
                f"annotation {c.ANNOTATION_OPERATION}={value!r}: expected "
                "KIND/EMBEDDING_SET_KEY or KIND/EMBEDDING_SET_KEY/REQUEST_ID"
            )
        if parts[0] not in c.OPERATIONS:
            raise InvalidOperationRequest(
                f"annotation {c.ANNOTATION_OPERATION}={value!r}: unknown operation "
                f"{parts[0]!r}; expected one of {', '.join(c.OPERATIONS)}"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "", value.strip())


def bounded_name(*parts: str, digest_of: str) -> str:
    """``part-part-<hash>`` cut to a valid object (and label) name length."""
    suffix = short_hash(digest_of, 8)
    stem = "-".join(p for p in parts if p).lower()
    stem = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in stem)
    stem = stem[: MAX_NAME - len(suffix) - 1].strip("-")
    return f"{stem}-{suffix}"


def requested_indexjob_name(cluster: Body, request: OperationRequest) -> str:
    """Deterministic: the same annotation on the same cluster always names the same IndexJob."""
    return bounded_name(
        cluster["metadata"]["name"],
        request.operation,
        digest_of=f"{cluster['metadata']['uid']}/{request.raw}",
    )


def build_requested_indexjob(cluster: Body, request: OperationRequest) -> Body:
    """The IndexJob that ``chroma.dev/operation`` on ``cluster`` asks for (owned by it)."""
    name = cluster["metadata"]["name"]
    meta_labels = labels(name, c.COMPONENT_OPERATION)
    meta_labels[c.LABEL_OPERATION] = request.operation
    meta_labels[c.LABEL_EMBEDDING_SET] = label_value(request.embedding_set)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {
            "name": requested_indexjob_name(cluster, request),
            "namespace": cluster["metadata"]["namespace"],
            "labels": meta_labels,
            "annotations": {c.ANNOTATION_REQUESTED_BY: request.raw},
            "ownerReferences": [owner_reference(cluster)],
        },
        "spec": {
            "cluster": name,
            "operation": request.operation,
            "embeddingSet": request.embedding_set,
        },
    }


def job_name(indexjob: Body) -> str:
    name: str = indexjob["metadata"]["name"]
    if len(name) <= MAX_NAME:
        return name
    return bounded_name(name, digest_of=indexjob["metadata"]["uid"])


def build_job(indexjob: Body, cluster: Body) -> Body:
    """The Job that runs ``indexjob`` with ``cluster``'s image and configuration.

    Raises ``InvalidParams`` when ``spec.params`` has a key ``--param`` cannot carry."""
    spec = IndexJobSpec.from_dict(indexjob["spec"])
    cspec = ClusterSpec.from_dict(cluster.get("spec"))
    cluster_name = cluster["metadata"]["name"]
    job_labels = labels(cluster_name, c.COMPONENT_OPERATION)
    job_labels[c.LABEL_INDEXJOB] = label_value(indexjob["metadata"]["name"])
    job_labels[c.LABEL_OPERATION] = spec.operation
    job_labels[c.LABEL_EMBEDDING_SET] = label_value(spec.embedding_set)
    container = chroma_container(
        cluster,
        cspec,
        "operation",
        [
            "op",
            "run",
            spec.operation,
            "--embedding-set",
            spec.embedding_set,
            *param_args(spec.params),
            "--local",
        ],
        spec.resources or cspec.workers.resources,
    )
    volume, _ = tmp_volume()
    job_spec: Body = {
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": job_labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": f"{cluster_name}-api",
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [volume],
            },
        },
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(indexjob),
            "namespace": indexjob["metadata"]["namespace"],
            "labels": job_labels,
            "ownerReferences": [owner_reference(indexjob)],
        },
        "spec": job_spec,
    }
