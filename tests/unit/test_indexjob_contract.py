"""chroma.indexjob, the IndexJob contract: dependency-free, equal to the CRD in crds/,
deterministic names, params rules, and ``--param`` args that read back to the same values.
The operator's and the API launcher's use of it are tested with their own modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chroma import indexjob as ij

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "components" / "chroma" / "indexjob.py"
CRD = yaml.safe_load((REPO / "crds" / "chroma.dev_indexjobs.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SPEC = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
KEY = "3f" * 20
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# -- Dependency-free ------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in chroma/indexjob.py"
            out.add(node.module or "")
    return out


def test_module_imports_only_the_standard_library() -> None:
    imported = {name.split(".")[0] for name in _imported_modules(MODULE)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_importing_it_loads_nothing_else_of_chroma_or_third_parties() -> None:
    code = (
        "import sys; import chroma.indexjob; "
        "print(sorted(m for m in sys.modules if m.startswith('chroma')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['chroma', 'chroma.indexjob']"


def test_operator_imports_only_the_contract_from_chroma() -> None:
    """The one door from ``chroma_operator`` into ``chroma`` is ``chroma.indexjob``."""
    for path in (REPO / "operator" / "chroma_operator").rglob("*.py"):
        from_chroma = {m for m in _imported_modules(path) if m.split(".")[0] == "chroma"}
        assert from_chroma <= {"chroma", "chroma.indexjob"}, (path, from_chroma)
        if "chroma" in from_chroma:  # ``from chroma import indexjob`` only
            text = path.read_text()
            assert re.findall(r"from chroma import (.+)", text) == ["indexjob as ij"], path


def test_exports_are_listed() -> None:
    assert sorted(ij.__all__) == sorted(
        name for name in vars(ij) if not name.startswith("_") and name.isidentifier()
        and name not in {"annotations", "hashlib", "json", "math", "re", "Mapping", "Any",
                         "Final"}
    )


# -- Equal to the CRD -----------------------------------------------------------------------


def test_operation_kinds_are_the_crd_enum() -> None:
    assert tuple(SPEC["operation"]["enum"]) == ij.OPERATIONS


def test_resource_names_are_the_crds() -> None:
    assert CRD["spec"]["group"] == ij.GROUP
    assert CRD["spec"]["names"]["kind"] == ij.KIND
    assert CRD["spec"]["names"]["plural"] == ij.PLURAL
    assert VERSION["name"] == ij.VERSION
    assert f"{ij.GROUP}/{ij.VERSION}" == ij.API_VERSION


def test_params_limits_are_the_crds() -> None:
    params = SPEC["params"]
    assert params["maxProperties"] == ij.MAX_PARAMS
    assert params["additionalProperties"]["maxLength"] == ij.MAX_PARAM_STRING


# -- Names ----------------------------------------------------------------------------------


def test_operation_indexjob_name_is_deterministic_and_valid() -> None:
    name = ij.operation_indexjob_name("prod", "index", KEY, 7)
    assert name == ij.operation_indexjob_name("prod", "index", KEY, 7)
    assert name.startswith("prod-index-7-") and DNS_LABEL.match(name)
    others = {
        ij.operation_indexjob_name("prod", "index", KEY, 8),
        ij.operation_indexjob_name("prod", "reindex", KEY, 7),
        ij.operation_indexjob_name("prod", "index", "ab" * 20, 7),
        ij.operation_indexjob_name("dev", "index", KEY, 7),
    }
    assert name not in others and len(others) == 4
    long = ij.operation_indexjob_name("C" * 80, "fit-mhb", KEY, 123456789)
    assert len(long) <= ij.MAX_NAME and DNS_LABEL.match(long)


@pytest.mark.parametrize(("args", "name"), [
    (("prod", "index", KEY, 7), "prod-index-7-d0432e48"),
    (("c" * 63, "fit-mhb", KEY, 123456789),
     "cccccccccccccccccccccccccccccccccccccccccccccccccccccc-5afedafd"),
    (("Prod_1", "compact", "", 0), "prod-1-compact-0-ef0b49de"),
])
def test_operation_indexjob_names_are_stable(args: tuple, name: str) -> None:
    """The names the API's launcher wrote before the contract module existed: a rerun
    (or an upgraded API) must find the IndexJob an earlier one created."""
    from chroma.operations.launchers import indexjob_name

    assert ij.operation_indexjob_name(*args) == name
    assert indexjob_name(*args) == name


def test_requested_indexjob_name_depends_on_cluster_uid_and_request() -> None:
    name = ij.requested_indexjob_name("prod", "uid-1", "reindex", f"reindex/{KEY}")
    assert name == ij.requested_indexjob_name("prod", "uid-1", "reindex", f"reindex/{KEY}")
    assert name.startswith("prod-reindex-") and DNS_LABEL.match(name)
    assert name != ij.requested_indexjob_name("prod", "uid-2", "reindex", f"reindex/{KEY}")
    assert name != ij.requested_indexjob_name("prod", "uid-1", "reindex", f"reindex/{KEY}/2")


def test_job_name_is_the_indexjob_name_when_it_fits() -> None:
    assert ij.job_name("ij-1", "uid") == "ij-1"
    long = ij.job_name("x" * 100, "uid")
    assert len(long) <= ij.MAX_NAME and long != ij.job_name("x" * 100, "other-uid")


@pytest.mark.parametrize("value", ["abc", KEY, "a b/c", "-x-", "", "y" * 200, "_a.b_"])
def test_label_value_is_a_valid_label(value: str) -> None:
    """ASCII input (embedding set keys are hex); non-ASCII letters pass through as they
    always have (``str.isalnum``), kept equal to the API launcher's copy for now."""
    out = ij.label_value(value)
    assert len(out) <= 63
    assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", out, re.ASCII) or out == "x"


# -- spec.params ----------------------------------------------------------------------------


def test_param_keys() -> None:
    assert ij.param_problem({"grace_s": 1, "Mixed.Key-2": "x", "_x": 1, "k" * 63: 1}) is None
    for bad in ("a=b", "", "k" * 64, "1abc", "ok\n", "sp ace"):
        problem = ij.param_problem({"ok": 1, bad: 1})
        assert problem and repr(bad) in problem
        with pytest.raises(ij.InvalidParams):
            ij.param_args({bad: 1})


def test_crd_params_keeps_what_the_crd_accepts() -> None:
    params: dict[str, Any] = {
        "seconds": 60, "ratio": 0.5, "dry_run": True, "method": "ledoit_wolf",
        "a=b": 1, "nested": {"x": 1}, "listed": [1], "none": None, "nan": float("nan"),
        "huge": 2**63, "long": "x" * (ij.MAX_PARAM_STRING + 1),
    }
    kept, omitted = ij.crd_params(params)
    assert kept == {"dry_run": True, "method": "ledoit_wolf", "ratio": 0.5, "seconds": 60}
    assert list(kept) == sorted(kept)
    assert omitted == ["a=b", "huge", "listed", "long", "nan", "nested", "none"]
    assert ij.param_problem(kept) is None


def test_crd_params_caps_the_count_in_key_order() -> None:
    kept, omitted = ij.crd_params({f"p{i:02d}": i for i in range(ij.MAX_PARAMS + 3)})
    assert len(kept) == ij.MAX_PARAMS and omitted == ["p32", "p33", "p34"]


ROUND_TRIP = [60, -1, 0.5, True, False, "ledoit_wolf", "60", "true", "null", "0.5", "a=b",
              "", "with space", "[1", '{"a": 1}', "NaN", "é", "[" * 5000]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: repr(v)[:20])
def test_param_args_read_back_to_the_same_value(value: Any) -> None:
    args = ij.param_args({"k": value})
    assert args[0] == "--param"
    key, read = ij.parse_param(args[1])
    assert key == "k" and read == value and type(read) is type(value)


def test_param_args_are_sorted_and_plain_words_stay_readable() -> None:
    args = ij.param_args({"b": "ledoit_wolf", "a": 5000, "c": "60"})
    assert args == ["--param", "a=5000", "--param", "b=ledoit_wolf", "--param", 'c="60"']


@pytest.mark.parametrize("arg", ["novalue", "=1", ""])
def test_parse_param_refuses_what_is_not_key_value(arg: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        ij.parse_param(arg)


def test_param_value_keeps_non_json_constants_as_text() -> None:
    assert ij.param_value("NaN") == "NaN" and ij.param_value("Infinity") == "Infinity"
    assert ij.parse_param("a=b=c") == ("a", "b=c")
