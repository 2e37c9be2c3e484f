"""The README's "Run on Kubernetes" commands match the chart and the CRDs: the chart path,
release and the objects it names (deployment/..., service/...) exist in what the chart
renders; --set keys are chart values; resource names, short names and the category are
the CRDs'; the YAML it applies is valid for the CRDs; patched fields exist in the spec;
the annotation and operation kinds are the operator's; children are named as the
operator names them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from chroma_operator import constants as c
from chroma_operator.manifests.cluster import names as child_names
from tests.unit.test_chart import CHART, render

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CRDS = {d["spec"]["names"]["kind"]: d for d in
        (yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml")))}


def section() -> str:
    text = README.read_text()
    match = re.search(r"^## Run on Kubernetes\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README has no '## Run on Kubernetes' section"
    return match.group(1)


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section(), re.S)


def commands() -> list[list[str]]:
    """Shell commands of the section (continuations joined, heredoc bodies and comments
    dropped), split into words."""
    out: list[list[str]] = []
    for block in bash_blocks():
        block = re.sub(r"<<'YAML'\n.*?\nYAML\n", "\n", block, flags=re.S)
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


def heredocs() -> list[dict[str, Any]]:
    return [yaml.safe_load(body) for block in bash_blocks()
            for body in re.findall(r"<<'YAML'\n(.*?)\nYAML\n", block, re.S)]


def option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        if word in names:
            return words[i + 1]
    return None


def kubectl(verb: str | None = None) -> list[list[str]]:
    return [w for w in commands() if w[0] == "kubectl" and (verb is None or verb in w)]


def helm_install() -> list[str]:
    (install,) = [w for w in commands() if w[:2] == ["helm", "install"]]
    return install


def resource_names() -> dict[str, str]:
    """Every name kubectl accepts for our kinds -> kind (plural, singular, short, kind)."""
    out: dict[str, str] = {}
    for kind, crd in CRDS.items():
        n = crd["spec"]["names"]
        for name in [n["plural"], n["singular"], kind.lower(), *n.get("shortNames", [])]:
            out[name] = kind
    return out


def test_helm_install_names_the_chart_and_its_values() -> None:
    install = helm_install()
    release, chart = install[2], install[3]
    assert (REPO / chart).resolve() == CHART
    schema = json.loads((CHART / "values.schema.json").read_text())
    for words in [install, *[w for w in commands() if w[0] == "helm"]]:
        for i, word in enumerate(words):
            if word == "--set":
                key = words[i + 1].split("=", 1)[0]
                node = schema
                for part in key.split("."):
                    assert part in node.get("properties", {}), f"--set {key}: no such value"
                    node = node["properties"][part]
    for words in commands():
        if words[:2] in (["helm", "test"], ["helm", "uninstall"]):
            assert words[2] == release, words


def test_objects_the_readme_names_exist_in_the_rendered_chart() -> None:
    install = helm_install()
    namespace = option(install, "-n", "--namespace")
    assert namespace
    sets = [install[i + 1] for i, w in enumerate(install) if w == "--set"]
    docs = render(*[a for s in sets for a in ("--set", s)], release=install[2],
                  namespace=namespace)
    rendered = {(d["kind"].lower(), d["metadata"]["name"]) for d in docs}
    checked = 0
    for words in kubectl():
        if option(words, "-n") != namespace:
            continue
        for word in words:
            if re.fullmatch(r"(deployment|service|serviceaccount)/[a-z0-9-]+", word):
                kind, name = word.split("/")
                assert (kind, name) in rendered, f"{word} is not made by the chart"
                checked += 1
    assert checked, "the README names no chart object"


def test_kubectl_resource_names_are_the_crds() -> None:
    known = resource_names()
    categories = {cat for crd in CRDS.values() for cat in crd["spec"]["names"]["categories"]}
    used = 0
    for words in kubectl():
        verb_index = next(i for i, w in enumerate(words) if w in (
            "get", "patch", "annotate", "describe", "apply", "create", "delete",
            "rollout", "port-forward"))
        verb = words[verb_index]
        if verb in ("get", "patch", "annotate", "describe", "delete"):
            resource = words[verb_index + 1]
            assert resource in known or resource in categories, f"unknown resource {resource}"
            used += 1
    assert used >= 6


def test_applied_yaml_is_valid_for_the_crds() -> None:
    from jsonschema import Draft7Validator  # the chart's schema dialect

    docs = heredocs()
    kinds = {d["kind"] for d in docs}
    assert {"ChromaCluster", "IndexJob"} <= kinds
    cluster_spec = json.loads((CHART / "values.schema.json").read_text())[
        "properties"]["cluster"]["properties"]["spec"]
    for doc in docs:
        assert doc["apiVersion"] == c.API_VERSION
        if doc["kind"] == "ChromaCluster":
            Draft7Validator(cluster_spec).validate(doc["spec"])
            for required in ("storage", "database"):
                assert required in doc["spec"]
        if doc["kind"] == "IndexJob":
            schema = CRDS["IndexJob"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            spec_schema = schema["properties"]["spec"]
            assert set(spec_schema["required"]) <= set(doc["spec"])
            assert set(doc["spec"]) <= set(spec_schema["properties"])
            assert doc["spec"]["operation"] in c.OPERATIONS


def test_patches_name_spec_fields() -> None:
    spec_schema = CRDS["ChromaCluster"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]

    def check(patch: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        for key, value in patch.items():
            assert key in schema.get("properties", {}), f"{path}.{key} is not in the CRD"
            if isinstance(value, dict):
                check(value, schema["properties"][key], f"{path}.{key}")

    patches = [json.loads(option(w, "-p") or "{}") for w in kubectl("patch")]
    assert len(patches) >= 3
    for patch in patches:
        check(patch["spec"], spec_schema, "spec")


def test_annotation_and_children_are_the_operators() -> None:
    (cluster,) = [d for d in heredocs() if d["kind"] == "ChromaCluster"]
    name = cluster["metadata"]["name"]
    children = set(child_names(name).values())
    (annotate,) = kubectl("annotate")
    key, _, value = annotate[-1].partition("=")
    assert key == c.ANNOTATION_OPERATION
    assert value.split("/")[0] in c.OPERATIONS
    assert annotate[annotate.index("annotate") + 2] == name
    for words in kubectl():
        for word in words:
            if word.startswith("service/"):
                assert word.split("/")[1] in children, f"{word}: the operator makes {children}"


@pytest.mark.parametrize("path", ["charts/chroma/ci/cluster-values.yaml", "docs/operator.md",
                                  "charts/chroma/crds", "tests/e2e"])
def test_linked_paths_exist(path: str) -> None:
    assert path in section()
    assert (REPO / path).exists()
