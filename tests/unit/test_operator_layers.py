"""The operator's layers, as drawn in chroma_operator/__init__.py, checked on the imports.

main -> handlers -> reconcile -> kube / manifests / status -> status_types; constants and
config below everything. A module may import only the layers its row allows, so the
picture in the docstring stays true (what import-linter would check, with the AST).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "chroma_operator"

BASE = {"chroma_operator.constants", "chroma_operator.config", "chroma.indexjob", "chroma"}
"""Every layer may use these."""

ALLOWED: dict[str, set[str]] = {
    "status_types": set(),
    "constants": {"chroma", "chroma.indexjob"},
    "config": set(),
    "manifests": BASE | {"chroma_operator.manifests"},
    "status": BASE | {
        "chroma_operator.manifests", "chroma_operator.status", "chroma_operator.status_types"},
    "kube": BASE,
    "reconcile": BASE | {
        "chroma_operator.reconcile",
        "chroma_operator.kube",
        "chroma_operator.manifests",
        "chroma_operator.status",
        "chroma_operator.status_types",
    },
    "handlers": BASE | {
        "chroma_operator.reconcile",
        "chroma_operator.kube",
        "chroma_operator.status_types",
    },
    "main": {"chroma_operator.handlers"},
    "__main__": {"chroma_operator.main"},
    "__init__": set(),
}
"""Layer (first part of the module path) -> first-party modules it may import."""

NO_KOPF = {"status_types", "constants", "config", "manifests", "status", "kube", "reconcile"}
"""Layers that must not know kopf (only handlers and main register with it)."""


def first_party_imports(path: Path) -> set[str]:
    """``chroma``/``chroma_operator`` modules ``path`` imports, up to their layer."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module in ("chroma", "chroma_operator"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] in ("chroma", "chroma_operator"):
                out.add(".".join(parts[:2]))
    return out


def third_party_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(path: Path) -> None:
    layer = layer_of(path)
    assert layer in ALLOWED, f"{path.name}: new layer {layer!r}; add it to ALLOWED"
    extra = first_party_imports(path) - ALLOWED[layer]
    assert not extra, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(extra)}"


@pytest.mark.parametrize("path", [p for p in MODULES if layer_of(p) in NO_KOPF],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_handlers_and_main_know_kopf(path: Path) -> None:
    assert "kopf" not in third_party_imports(path)


def test_status_types_is_a_leaf() -> None:
    imported = third_party_imports(PACKAGE / "status_types.py")
    assert imported <= {"__future__", "enum", "typing"}, imported
