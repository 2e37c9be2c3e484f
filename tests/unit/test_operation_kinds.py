"""The table of operation kinds is the one source: every other list of kinds agrees.

``chroma.operations.kinds.KINDS`` names each kind's handler, worker, params and whether an
IndexJob may carry it. The API's enum, ``chroma run``'s workers, the catalog schema's CHECK
and the IndexJob CRD's ``spec.operation`` enum must say the same, or a kind exists in one
place and fails in another.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chroma.api.models import OperationCreate
from chroma.errors import InvalidInput
from chroma.operations.kinds import (
    INDEXJOB_KINDS,
    KIND_NAMES,
    KINDS,
    WORKERS,
    OperationUnavailable,
    kind_of,
    validate_params,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_api_enum_is_the_table() -> None:
    schema = OperationCreate.model_json_schema()
    assert tuple(schema["properties"]["kind"]["enum"]) == KIND_NAMES


def test_every_kind_has_one_worker_and_a_callable_handler() -> None:
    taken = [kind for kinds in WORKERS.values() for kind in kinds]
    assert sorted(taken) == sorted(KIND_NAMES)
    assert all(callable(kind.handler) for kind in KINDS.values())


def test_the_catalog_schema_allows_exactly_the_table() -> None:
    """The newest migration that sets the CHECK on ``operations.kind`` is the one in force."""
    migrations = sorted((REPO / "components/chroma/catalog/migrations").glob("*.sql"))
    checks = [found for path in migrations
              if (found := re.search(r"CHECK \(kind IN\s*\(([^)]*)\)\)", path.read_text()))]
    assert checks
    listed = checks[-1]
    assert tuple(re.findall(r"'([^']+)'", listed.group(1))) == KIND_NAMES


def test_the_indexjob_crd_enum_is_the_table() -> None:
    crd = yaml.safe_load((REPO / "crds/chroma.dev_indexjobs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert tuple(spec["properties"]["operation"]["enum"]) == INDEXJOB_KINDS


def test_unknown_kinds_and_bad_params_are_refused_with_their_names() -> None:
    with pytest.raises(OperationUnavailable, match="dance"):
        kind_of("dance")
    with pytest.raises(InvalidInput, match="seconds"):
        validate_params("sleep", {"seconds": "long"})
    with pytest.raises(InvalidInput, match="grace_s"):
        validate_params("compact", {"grace_s": -1})
    validate_params("compact", {"grace_s": 60, "note": "kept"})  # unknown keys are kept
