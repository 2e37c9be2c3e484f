"""``chroma op run --param``: how values are read, and the round trip the cluster relies
on: an IndexJob's ``spec.params`` -> the operator's Job args -> the params that
``chroma op run`` (the Job's command) queues, unchanged in value and type."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from chroma.cli import ops
from chroma.cli.main import app
from chroma.cli.ops import _parse_params
from chroma_operator import constants as c
from chroma_operator.manifests import build_job

KEY = "3f" * 20


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60", 60),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"007"', "007"),
        ('"true"', "true"),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("ledoit_wolf", "ledoit_wolf"),
        ("007", "007"),  # not JSON (leading zero): the text itself
        ("1.2.3", "1.2.3"),
        ("", ""),
        ("a=b", "a=b"),
        ("NaN", "NaN"),  # Python's json reads it, JSON and jsonb do not
        ("Infinity", "Infinity"),
        ("[" * 5000, "[" * 5000),  # too deep for the parser: text
    ],
)
def test_a_value_is_json_when_it_is_json_else_text(text: str, value: Any) -> None:
    (parsed,) = _parse_params([f"k={text}"]).values()
    assert parsed == value and type(parsed) is type(value)


def test_pairs_split_at_the_first_equals_and_need_a_key() -> None:
    assert _parse_params(["a=1", "b=x=y", "a=2"]) == {"a": 2, "b": "x=y"}
    for bad in ("novalue", "=5"):
        with pytest.raises(typer.BadParameter):
            _parse_params([bad])


PARAMS: dict[str, Any] = {
    "seconds": 5,
    "grace_s": 0.25,
    "big": 2**62,
    "dry_run": True,
    "strict": False,
    "method": "ledoit_wolf",
    "digits": "007",
    "number_text": "60",
    "float_text": "0.5",
    "bool_text": "true",
    "null_text": "null",
    "quoted": '"already quoted"',
    "json_text": '{"a": 1}',
    "nan_text": "NaN",
    "spaced": " 5 ",
    "empty": "",
    "with_equals": "a=b",
    "dashes": "--local",
    "unicode": "résumé ✓",
    "newline": "two\nlines",
    "brackets": "[" * 1024,
    "Mixed.Key-1": "x",
    "_private": 1,
}


def _job_args(params: dict[str, Any]) -> list[str]:
    indexjob = {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {"name": "ij", "namespace": "ml", "uid": "u"},
        "spec": {"cluster": "demo", "operation": "compact", "embeddingSet": KEY, "params": params},
    }
    cluster = {
        "apiVersion": c.API_VERSION,
        "kind": c.CLUSTER_KIND,
        "metadata": {"name": "demo", "namespace": "ml", "uid": "c"},
        "spec": {"storage": {"url": "s3://b/p"}, "database": {"secret": {"name": "pg"}}},
    }
    (container,) = build_job(indexjob, cluster)["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def test_job_args_read_back_to_the_indexjob_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Job's own command line, parsed by the real CLI, queues exactly ``spec.params``."""
    queued: list[tuple[str, str | None, dict[str, Any]]] = []

    def run_local(kind: str, embedding_set: str | None, params: dict[str, Any]) -> int:
        queued.append((kind, embedding_set, params))
        return 0

    monkeypatch.setattr(ops, "_run_local", run_local)
    args = _job_args(PARAMS)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ((kind, embedding_set, params),) = queued
    assert (kind, embedding_set) == ("compact", KEY)
    assert params == PARAMS
    assert {k: type(v) for k, v in params.items()} == {k: type(v) for k, v in PARAMS.items()}


def test_job_args_are_sorted_and_readable() -> None:
    args = _job_args(
        {"method": "ledoit_wolf", "grace_s": 60, "digits": "60", "zeros": "007", "on": True}
    )
    assert args == [
        "op", "run", "compact", "--embedding-set", KEY,
        "--param", "digits=\"60\"",  # a string that would read back as a number: quoted
        "--param", "grace_s=60",
        "--param", "method=ledoit_wolf",
        "--param", "on=true",
        "--param", "zeros=007",  # not JSON, so plain text reads back the same
        "--local",
    ]  # fmt: skip
