"""The Dockerfile, parsed (no Docker needed): the final stage runs as a non-root user,
and every entry point it names (ENTRYPOINT, CMD, the commands in its comments), and every
command the chart and the operator's manifests run in the image, exists in the package:
a console script of pyproject.toml whose target imports, and a real CLI subcommand."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        full = (buffer + line).strip()
        buffer = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(text: str) -> list[Instruction]:
    all_ = instructions(text)
    starts = [i for i, (kw, _) in enumerate(all_) if kw == "FROM"]
    assert starts, "no FROM"
    return all_[starts[-1]:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def chroma_cli() -> Any:
    """The click group behind the ``chroma`` typer app (typer may bundle its own click)."""
    from chroma.cli.main import app

    command = typer.main.get_command(app)
    assert is_group(command)
    return command


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def assert_runs(argv: list[str]) -> None:
    """``argv`` starts with a console script whose target imports; for ``chroma``, the
    following words (up to the first option or placeholder) are real subcommands and
    the options after them exist."""
    scripts = console_scripts()
    program = argv[0]
    assert program in scripts, f"{program} is not a console script in pyproject.toml"
    module, _, func = scripts[program].partition(":")
    assert callable(getattr(importlib.import_module(module), func)), scripts[program]
    if program != "chroma":
        return
    command = chroma_cli()
    words = argv[1:]
    while words and is_group(command) and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        name = words.pop(0)
        assert name in command.commands, f"`chroma ... {name}` is not a subcommand of {argv}"
        command = command.commands[name]
    assert not is_group(command), f"{argv} names a group, not a command"
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{word} is not an option of {argv}"


def test_final_stage_runs_as_a_non_root_user() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    users = [rest for kw, rest in stage if kw == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, "USER must be a numeric non-root uid " + users[-1]
    assert group.isdigit() and int(group) != 0
    # the uid exists in the image and matches the Kubernetes runAsUser of the chart
    runs = " ".join(rest for kw, rest in stage if kw == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid {user}\b", runs), "useradd with that uid"
    values = yaml.safe_load((REPO / "charts" / "chroma" / "values.yaml").read_text())
    assert values["operator"]["podSecurityContext"]["runAsUser"] == int(user)
    # nothing after USER switches back to root
    after = stage[[kw for kw, _ in stage].index("USER"):]
    assert not [r for kw, r in after if kw == "USER" and r.split(":")[0] in ("0", "root")]


def test_entrypoint_and_cmd_exist_in_the_package() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    (entrypoint,) = [exec_form(rest) for kw, rest in stage if kw == "ENTRYPOINT"]
    (cmd,) = [exec_form(rest) for kw, rest in stage if kw == "CMD"]
    assert entrypoint == ["chroma"]
    assert_runs(entrypoint + cmd)
    exposed = [rest for kw, rest in stage if kw == "EXPOSE"]
    port = cmd[cmd.index("--port") + 1]
    assert port in " ".join(exposed)


def test_every_command_named_in_the_dockerfile_exists() -> None:
    text = DOCKERFILE.read_text()
    named = re.findall(r"`(chroma(?:-operator)?(?: [^`]*)?)`", text)
    assert "chroma-operator" in [n.split()[0] for n in named], "the operator is not named"
    assert len(named) >= 4, named
    for command in named:
        assert_runs(command.split())


def test_commands_the_chart_and_the_operator_run_exist() -> None:
    from chroma_operator.manifests.cluster import build_children
    from chroma_operator.manifests.indexjob import build_job

    cluster = {
        "apiVersion": "chroma.dev/v1alpha1", "kind": "ChromaCluster",
        "metadata": {"name": "c", "namespace": "n", "uid": "u", "generation": 1},
        "spec": {"storage": {"url": "s3://b/p", "credentialsSecret": {"name": "s"}},
                 "database": {"secret": {"name": "pg"}}},
    }
    children, _ = build_children(cluster)
    indexjob = {"apiVersion": "chroma.dev/v1alpha1", "kind": "IndexJob",
                "metadata": {"name": "ij", "namespace": "n", "uid": "v"},
                "spec": {"cluster": "c", "operation": "reindex", "embeddingSet": "k"}}
    containers = [
        c
        for child in [*children, build_job(indexjob, cluster)]
        if child["kind"] in ("Deployment", "Job")
        for c in child["spec"]["template"]["spec"]["containers"]
    ]
    chart = (REPO / "charts" / "chroma" / "templates" / "operator-deployment.yaml").read_text()
    assert "command: [chroma-operator]" in chart
    assert_runs(["chroma-operator"])
    assert len(containers) >= 3
    for container in containers:
        assert_runs(container["command"] + container.get("args", []))


def test_healthcheck_probes_a_served_path() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    (check,) = [rest for kw, rest in stage if kw == "HEALTHCHECK"]
    path = re.search(r"http://127\.0\.0\.1:\d+(/[\w/]*)", check)
    assert path, check
    contract = yaml.safe_load((REPO / "chroma-api.yaml").read_text())
    assert path.group(1) in contract["paths"]


def test_pinned_install_and_a_lean_context() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"uv pip install[^\n]*-c constraints\.txt", text), "install not pinned"
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests"):
        assert entry in ignored, f".dockerignore lacks {entry}"
    volumes = " ".join(rest for kw, rest in final_stage(text) if kw == "VOLUME")
    assert "/tmp" in volumes, "the read-only root needs /tmp declared writable"


@pytest.mark.parametrize("argv", [["chroma", "nonexistent"], ["chroma", "serve", "--nope"],
                                  ["chroma-nope"], ["chroma", "op"]])
def test_the_checker_catches_missing_entry_points(argv: list[str]) -> None:
    with pytest.raises(AssertionError):
        assert_runs(argv)


def uv_installs(text: str) -> list[str]:
    return [args for kw, args in instructions(text) if kw == "RUN" and "uv pip install" in args]


def test_uv_installs_into_the_image_venv_by_name() -> None:
    """uv 0.13 ignores ``VIRTUAL_ENV=...`` on the command line of ``python -m uv``: it
    installs into the interpreter that runs it, and the copied /opt/chroma venv is empty.
    Every ``uv pip install`` must name its target with ``--python``."""
    installs = uv_installs(DOCKERFILE.read_text())
    assert installs, "the Dockerfile installs nothing with uv"
    for args in installs:
        assert re.search(r"--python[ =]/opt/chroma/bin/python\b", args), args


def test_the_venv_check_catches_virtual_env_installs() -> None:
    before = (
        "FROM python:3.11-slim\n"
        "RUN python -m uv venv /opt/chroma \\\n"
        " && VIRTUAL_ENV=/opt/chroma python -m uv pip install --no-cache -c constraints.txt .\n"
    )
    (args,) = uv_installs(before)
    assert not re.search(r"--python[ =]/opt/chroma/bin/python\b", args)


def imported_top_level_modules(root: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def runtime_closure() -> set[str]:
    """Normalised names of the runtime dependencies and everything they require."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pending = [Requirement(r) for r in tomllib.loads(
        (REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while pending:
        req = pending.pop()
        name = norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            children = requires(req.name) or []
        except PackageNotFoundError:
            continue
        for child in children:
            parsed = Requirement(child)
            extras = req.extras
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}) or any(
                    parsed.marker.evaluate({"extra": e}) for e in extras):
                pending.append(parsed)
    return seen


def test_every_third_party_import_is_a_runtime_dependency() -> None:
    """The image installs only ``project.dependencies``: a module the service imports
    from a dev extra (scipy once was) makes ``chroma serve`` die in the image."""
    import sys
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    closure = runtime_closure()
    ours = {"chroma", "chroma_operator"}
    missing = {}
    for root in (REPO / "components", REPO / "operator"):
        for module in imported_top_level_modules(root) - ours - set(sys.stdlib_module_names):
            providers = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [])}
            if not providers & closure:
                missing[module] = sorted(providers) or ["<not installed>"]
    assert not missing, f"imported at run time but not a runtime dependency: {missing}"
