"""The IndexJob contract: the one place that says what an IndexJob is made of.

Owns the facts that the API's launcher (which writes IndexJobs for queued operations),
the operator (which writes IndexJobs for the ``chroma.dev/operation`` annotation and
turns every IndexJob into a Job) and ``chroma op run`` (which reads the Job's args back)
must agree on:

* the resource: ``GROUP``, ``VERSION``, ``API_VERSION``, ``KIND``, ``PLURAL``;
* which operation kinds an IndexJob may carry (``OPERATIONS``: the CRD's
  ``spec.operation`` enum in ``crds/chroma.dev_indexjobs.yaml``, checked by a test);
* the labels and annotations both writers put on an IndexJob;
* how names are derived (``bounded_name``, ``operation_indexjob_name``,
  ``requested_indexjob_name``, ``job_name``) and label values made safe
  (``label_value``): deterministic, so a rerun finds what an earlier run created;
* the ``spec.params`` rules (``PARAM_KEY_PATTERN``, ``MAX_PARAMS``, ``MAX_PARAM_STRING``,
  ``param_problem``, ``crd_accepts_param``, ``crd_params``) and how params travel as
  ``--param key=value`` arguments (``param_args``, ``param_text``) and are read back
  (``parse_param``, ``param_value``).

Must not touch: anything else. Standard library only, and no import from ``chroma``:
the operator (``chroma_operator``) imports this module as its one door into ``chroma``,
so importing it must stay as cheap as ``chroma/__init__.py`` itself. No I/O.
Unit-tested in ``tests/unit/test_indexjob_contract.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ANNOTATION_PARAMS_OMITTED",
    "ANNOTATION_REQUESTED_BY",
    "API_VERSION",
    "GROUP",
    "KIND",
    "LABEL_CLUSTER",
    "LABEL_EMBEDDING_SET",
    "LABEL_OPERATION",
    "MAX_NAME",
    "MAX_PARAMS",
    "MAX_PARAM_STRING",
    "OPERATIONS",
    "PARAM_KEY",
    "PARAM_KEY_PATTERN",
    "PLURAL",
    "VERSION",
    "InvalidParams",
    "bounded_name",
    "crd_accepts_param",
    "crd_params",
    "job_name",
    "label_value",
    "operation_indexjob_name",
    "param_args",
    "param_problem",
    "param_text",
    "param_value",
    "parse_param",
    "requested_indexjob_name",
    "short_hash",
]

# -- The resource -------------------------------------------------------------------------

GROUP: Final = "chroma.dev"
"""API group of every Chroma custom resource (ChromaCluster, Dataset, IndexJob)."""
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "IndexJob"
PLURAL: Final = "indexjobs"

OPERATIONS: Final = ("index", "reindex", "fit-mhb", "recommend", "compact", "expire")
"""Operation kinds an IndexJob may carry (``chroma op run KIND``); the CRD's
``spec.operation`` enum. Other kinds stay in the catalog's queue for the workers."""

# -- Labels and annotations on an IndexJob (and on its Job) --------------------------------

LABEL_CLUSTER: Final = f"{GROUP}/cluster"
"""The ChromaCluster the IndexJob runs on."""
LABEL_OPERATION: Final = f"{GROUP}/operation"
"""The operation kind (one of ``OPERATIONS``)."""
LABEL_EMBEDDING_SET: Final = f"{GROUP}/embedding-set"
"""The embedding set key, through ``label_value``."""
ANNOTATION_REQUESTED_BY: Final = f"{GROUP}/requested-by"
"""Who asked for the IndexJob: the annotation value, or ``api/operation/ID (WHO)``."""
ANNOTATION_PARAMS_OMITTED: Final = f"{GROUP}/params-omitted"
"""Comma-separated keys of the operation's params the CRD could not hold."""

# -- Names --------------------------------------------------------------------------------

MAX_NAME: Final = 63
"""IndexJob names become Job names and label values: at most 63 characters."""


def short_hash(value: str, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``value``."""
    return hashlib.sha1(value.encode()).hexdigest()[:length]


def label_value(value: str) -> str:
    """A label-safe version of ``value`` (<= 63 chars, alphanumeric ends)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in value)
    if len(cleaned) > MAX_NAME:
        cleaned = cleaned[:52] + "-" + short_hash(value, 10)
    return cleaned.strip("-_.") or "x"


def bounded_name(*parts: str, digest_of: str) -> str:
    """``part-part-<hash>`` cut to a valid object (and label) name length.

    The 8-digit hash of ``digest_of`` keeps names unique after the cut."""
    suffix = short_hash(digest_of, 8)
    stem = "-".join(p for p in parts if p).lower()
    stem = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in stem)
    stem = stem[: MAX_NAME - len(suffix) - 1].strip("-")
    return f"{stem}-{suffix}"


def operation_indexjob_name(
    cluster: str, kind: str, embedding_set_key: str, operation_id: int
) -> str:
    """Name of the IndexJob the API writes for a queued operation: the same operation
    always names the same IndexJob (``<cluster>-<kind>-<id>-<hash>``)."""
    return bounded_name(
        cluster,
        kind,
        str(operation_id),
        digest_of=f"{cluster}/{kind}/{embedding_set_key}/{operation_id}",
    )


def requested_indexjob_name(cluster: str, cluster_uid: str, kind: str, request: str) -> str:
    """Name of the IndexJob the operator writes for a ``chroma.dev/operation`` annotation:
    the same annotation value on the same cluster always names the same IndexJob."""
    return bounded_name(cluster, kind, digest_of=f"{cluster_uid}/{request}")


def job_name(indexjob_name: str, indexjob_uid: str) -> str:
    """Name of the Job that runs an IndexJob: its own name when that fits."""
    if len(indexjob_name) <= MAX_NAME:
        return indexjob_name
    return bounded_name(indexjob_name, digest_of=indexjob_uid)


# -- spec.params --------------------------------------------------------------------------

PARAM_KEY_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"
"""Keys of ``spec.params``. The CRD cannot check them (its values are typeless, so CEL
does not see the map): the operator refuses an IndexJob with another key, and the API
leaves such a param out of the IndexJobs it writes."""
PARAM_KEY: Final = re.compile(PARAM_KEY_PATTERN)
MAX_PARAMS: Final = 32
"""``spec.params`` ``maxProperties`` in the CRD."""
MAX_PARAM_STRING: Final = 1024
"""``maxLength`` of a string value of ``spec.params`` in the CRD."""

_INT64 = range(-(2**63), 2**63)


class InvalidParams(ValueError):
    """``spec.params`` cannot be passed to ``chroma op run`` as ``--param`` unchanged."""


def param_problem(params: Mapping[str, Any]) -> str | None:
    """Why ``params`` cannot become ``--param`` arguments, or None when they can.

    Only keys are checked: the CRD already limits the values (scalars, bounded strings)
    but cannot check keys, and a key holding ``=`` would be split in the wrong place."""
    bad = sorted(k for k in params if not PARAM_KEY.fullmatch(k))
    if bad:
        return (
            f"spec.params keys {', '.join(repr(k) for k in bad)} are not valid: keys are 1-63 "
            "characters, letters, digits, _ . - and start with a letter or _"
        )
    return None


def crd_accepts_param(key: str, value: Any) -> bool:
    """Whether the CRD (and the operator) accept ``key: value`` in ``spec.params``."""
    if not PARAM_KEY.fullmatch(key):
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in _INT64  # the API server's int64
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_PARAM_STRING


def crd_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the params an IndexJob can hold, the sorted keys left out).

    An operation's params are any JSON object; leaving out what the CRD would refuse
    (and keys past ``MAX_PARAMS``, in key order) keeps the IndexJob creatable."""
    kept = {k: params[k] for k in sorted(params) if crd_accepts_param(k, params[k])}
    for extra in list(kept)[MAX_PARAMS:]:
        del kept[extra]
    return kept, sorted(set(params) - set(kept))


def param_text(value: Any) -> str:
    """The text after ``key=`` that ``param_value`` reads back as ``value``.

    A value is read as JSON when it is JSON and as plain text otherwise, so a string
    that is not JSON stays readable as it is (``ledoit_wolf``) and everything else is
    written as JSON: ``60``, ``0.5``, ``true``, and ``"60"`` for a string that would
    otherwise read back as a number."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        except RecursionError:
            pass  # deeply nested brackets: quote it, it reads back as a JSON string
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def param_args(params: Mapping[str, Any]) -> list[str]:
    """``--param key=value`` for every param, sorted by key (a stable Job spec).

    Raises ``InvalidParams`` when a key cannot travel as ``--param``."""
    problem = param_problem(params)
    if problem:
        raise InvalidParams(problem)
    args: list[str] = []
    for key in sorted(params):
        args += ["--param", f"{key}={param_text(params[key])}"]
    return args


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def param_value(text: str) -> Any:
    """The value of a ``--param`` (the text after the first ``=``): JSON when ``text`` is
    JSON, else ``text`` itself. NaN and Infinity are not JSON, so they stay text."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return text


def parse_param(arg: str) -> tuple[str, Any]:
    """``key=value`` (split at the first ``=``) -> (key, value).

    Raises ``ValueError`` when there is no ``=`` or no key."""
    key, sep, text = arg.partition("=")
    if not sep or not key:
        raise ValueError(f"--param takes key=value, not {arg!r}")
    return key, param_value(text)
