"""API keys over real HTTP: ``chroma serve`` subprocesses with keys files (DESIGN §11).

The matrix is generated from ``chroma-api.yaml``: every documented operation is called
with no key, an unknown key and a key of each scope; an operation missing from
``chroma.api.auth.ROUTE_SCOPES`` fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from chroma.api.auth import ROUTE_SCOPES, Scope, key_lines
from chroma.client import Client
from chroma.errors import Forbidden, Unauthorized
from tests.conftest import CHROMA_BIN, ServerProcess, free_port
from tests.integration.system import wait_for

pytestmark = pytest.mark.integration

CONTRACT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "chroma-api.yaml").read_text()
)
KEYS = {scope: line.split()[1] for scope, line in
        zip(Scope, key_lines(list(Scope)), strict=True)}
UNKNOWN = "u" * 43
ES = {"model": "auth-matrix"}


def _keys_file(path: Path, keys: dict[Scope, str]) -> Path:
    path.write_text("# test keys\n" + "".join(f"{s.name} {k}\n" for s, k in keys.items()))
    return path


@pytest.fixture(scope="module")
def keyed_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("auth")
    server = ServerProcess(env={
        "CHROMA_DATABASE_URL": database_url,
        "CHROMA_STORAGE_URL": str(root / "store"),
        "CHROMA_API_KEYS_FILE": str(_keys_file(root / "keys", KEYS)),
    }, log_path=root / "server.log")
    server.start()
    yield server
    server.stop()


def _auth(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def _calls(url: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(method, contract path, concrete URL, body) for every documented operation."""
    admin = _auth(KEYS[Scope.admin])
    httpx.post(f"{url}/api/v1/log", headers=admin, json={
        "embedding_set": ES, "dataset": "auth-d", "split": "training", "id": "a",
        "embedding": [1.0, 0.0]}).raise_for_status()
    filled = {"{name}": "auth-d", "{key}": "0" * 40, "{record_id}": "zz",
              "{operation_id}": "999999"}
    bodies = {
        "/api/v1/log": {"embedding_set": ES, "dataset": "auth-d", "split": "training",
                        "embedding": [2.0, 0.0]},
        "/api/v1/datasets/{name}": {"split": "training", "embedding_set": ES},
        "/api/v1/datasets/{name}/records/delete": {"ids": ["zz"]},
        "/api/v1/datasets/{name}/records/tags": {"ids": ["a"], "add": ["t"]},
        "/api/v1/recommendations/labelled": {"dataset": "auth-d", "ids": ["zz"]},
        "/api/v1/operations": {"kind": "sleep", "params": {"seconds": 0}},
        "/api/v1/query": {"embedding": [1.0, 0.0], "k": 1},
    }
    calls = []
    for path, item in CONTRACT["paths"].items():
        concrete = path
        for placeholder, value in filled.items():
            concrete = concrete.replace(placeholder, value)
        for method in item:
            calls.append((method.upper(), path, f"{url}{concrete}", bodies.get(path)))
    return calls


def test_every_operation_answers_401_403_or_its_documented_success(keyed_server) -> None:
    checked = 0
    for method, path, url, body in _calls(keyed_server.url):
        needed = ROUTE_SCOPES[(method, path)]  # KeyError: a route without a scope
        operation = CONTRACT["paths"][path][method.lower()]
        where = f"{method} {path}"
        if needed is None:
            assert "security" not in operation, where
            assert httpx.request(method, url, json=body).status_code < 400, where
            checked += 1
            continue
        assert operation["security"] == [{"ApiKey": [needed.name]}], where
        assert {"401", "403"} <= set(operation["responses"]), where
        for key in (None, UNKNOWN, "Basic-is-not-bearer"):
            headers = ({"authorization": "Basic dXNlcjpwYXNz"} if key == "Basic-is-not-bearer"
                       else _auth(key))
            answer = httpx.request(method, url, json=body, headers=headers)
            assert answer.status_code == 401, f"{where} with {key!r}: {answer.text[:200]}"
            assert answer.headers["www-authenticate"] == "Bearer", where
            assert answer.json()["error"] == "unauthorized", where
        for scope, key in KEYS.items():
            answer = httpx.request(method, url, json=body, headers=_auth(key))
            if scope < needed:
                assert answer.status_code == 403, f"{where} as {scope.name}: {answer.text}"
                assert answer.json()["error"] == "forbidden"
                assert needed.name in answer.json()["message"], where
            else:
                assert answer.status_code not in (401, 403), f"{where} as {scope.name}"
                assert str(answer.status_code) in operation["responses"], (
                    f"{where} as {scope.name}: {answer.status_code} {answer.text[:200]}")
        checked += 1
    assert checked == sum(len(item) for item in CONTRACT["paths"].values())


def test_allowed_calls_really_succeed(keyed_server) -> None:
    """The matrix above accepts any documented code; these must be 2xx for their scope."""
    url = keyed_server.url
    reader, writer = _auth(KEYS[Scope.read]), _auth(KEYS[Scope.write])
    admin = _auth(KEYS[Scope.admin])
    for path in ("/api/v1/datasets", "/api/v1/embeddingsets", "/api/v1/status",
                 "/api/v1/operations", "/metrics"):
        assert httpx.get(f"{url}{path}", headers=reader).status_code == 200, path
    assert httpx.post(f"{url}/api/v1/log", headers=writer, json={
        "embedding_set": ES, "dataset": "auth-ok", "split": "training",
        "embedding": [0.0, 1.0]}).status_code == 201
    assert httpx.post(f"{url}/api/v1/datasets/auth-ok/records/delete", headers=writer,
                      json={"ids": ["nothing"]}).status_code == 200
    started = httpx.post(f"{url}/api/v1/operations", headers=admin,
                         json={"kind": "sleep", "params": {"seconds": 0}})
    assert started.status_code in (200, 201)
    cancel = httpx.post(f"{url}/api/v1/operations/{started.json()['id']}/cancel",
                        headers=admin)
    assert cancel.status_code in (200, 409)  # 409: it already finished
    assert httpx.put(f"{url}/api/v1/datasets/auth-reg", headers=admin, json={
        "split": "production", "embedding_set": ES}).status_code == 201


def test_operation_params_out_of_range_are_422(keyed_server) -> None:
    admin = _auth(KEYS[Scope.admin])
    for body in ({"kind": "sleep", "params": {"seconds": 7200}},
                 {"kind": "compact", "params": {"grace_s": 0}}):
        answer = httpx.post(f"{keyed_server.url}/api/v1/operations", headers=admin, json=body)
        assert answer.status_code == 422, answer.text


def test_health_ready_and_public_metrics_need_no_key(
    database_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(env={
        "CHROMA_DATABASE_URL": database_url, "CHROMA_STORAGE_URL": str(tmp_path / "store"),
        "CHROMA_API_KEYS": f"read {KEYS[Scope.read]}", "CHROMA_METRICS_PUBLIC": "true",
    }, log_path=tmp_path / "server.log")
    server.start()  # polls /ready without a key
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 200
        assert httpx.get(f"{server.url}/api/v1/status").status_code == 401
    finally:
        server.stop()


# -- rotation and logs -------------------------------------------------------------------


def test_a_rotated_keys_file_applies_without_restart_and_no_key_is_logged(
    database_url: str, tmp_path: Path
) -> None:
    old, new = "o" * 40 + "-old", "n" * 40 + "-new"
    keys = _keys_file(tmp_path / "keys", {Scope.read: old})
    server = ServerProcess(env={
        "CHROMA_DATABASE_URL": database_url, "CHROMA_STORAGE_URL": str(tmp_path / "store"),
        "CHROMA_API_KEYS_FILE": str(keys),
    }, log_path=tmp_path / "server.log")
    server.start()
    status = f"{server.url}/api/v1/status"
    try:
        assert httpx.get(status, headers=_auth(old)).status_code == 200
        assert httpx.get(status, headers=_auth(new)).status_code == 401
        # What a Secret update does: a new file swapped in by rename.
        _keys_file(tmp_path / "keys.next", {Scope.read: new}).replace(keys)
        wait_for(lambda: httpx.get(status, headers=_auth(new)).status_code == 200, 30,
                 "the new key accepted")
        assert httpx.get(status, headers=_auth(old)).status_code == 401
        # A broken file (a short key) keeps the keys in force and warns, naming no key.
        keys.write_text(f"read {new}\nadmin short-{old[:8]}\n")
        wait_for(lambda: httpx.get(status, headers=_auth(new)).status_code == 200
                 and "API keys not reloaded" in server.log_path.read_text(), 30,
                 "the warning about the broken file")  # a request looks at the file
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "API keys reloaded" in log
    for secret in (old, new, f"short-{old[:8]}"):
        assert secret not in log


# -- start-up ----------------------------------------------------------------------------


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("CHROMA_API_KEY") and k != "CHROMA_INSECURE"}
    return subprocess.run([CHROMA_BIN, *args], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["serve", "run"])
def test_a_reachable_address_without_keys_refuses_to_start(command: str, tmp_path: Path) -> None:
    done = _start([command, "--host", "0.0.0.0", "--port", str(free_port())], {}, tmp_path)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr
    assert "--insecure" in done.stderr and "CHROMA_API_KEYS_FILE" in done.stderr
    assert not (tmp_path / "chroma-data").exists()  # nothing was started


def test_a_short_key_refuses_to_start_naming_the_line_not_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("admin not-long-enough-secret\n")
    done = _start(["serve"], {"CHROMA_API_KEYS_FILE": str(keys)}, tmp_path)
    assert done.returncode == 2
    assert "line 1: a key must be at least 32 characters" in done.stderr
    assert "not-long-enough-secret" not in done.stderr + done.stdout


@pytest.mark.parametrize("insecure", [["--insecure"], []])
def test_insecure_accepts_the_risk(
    insecure: list[str], database_url: str, tmp_path: Path
) -> None:
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_STORAGE_URL": str(tmp_path / "s")}
    if not insecure:
        env["CHROMA_INSECURE"] = "true"  # the form the operator sets
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([CHROMA_BIN, "serve", "--host", "0.0.0.0", "--port", str(port),
                                *insecure], env={**os.environ, **env}, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, "chroma serve --insecure ready")
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/status").status_code == 200
    finally:
        process.terminate()
        process.wait(30)
        log.close()


# -- client and CLI ----------------------------------------------------------------------


def test_client_sends_its_key_and_raises_unauthorized_or_forbidden(
    keyed_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = keyed_server.url
    monkeypatch.delenv("CHROMA_API_KEY", raising=False)
    with Client(url, progress=False) as client, pytest.raises(Unauthorized) as info:
        client.datasets()
    assert "API key is required" in str(info.value)
    with Client(url, api_key=KEYS[Scope.read], progress=False) as client:
        assert isinstance(client.datasets(), list)
        with pytest.raises(Forbidden) as denied:
            client.log([1.0, 2.0], embedding_set=ES, dataset="auth-c", split="training")
        assert "needs write" in str(denied.value)
    monkeypatch.setenv("CHROMA_API_KEY", KEYS[Scope.write])
    with Client(url, progress=False) as client:
        assert client.log([1.0, 2.0], embedding_set=ES, dataset="auth-c",
                          split="training")["count"] == 1


def _cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CHROMA_API_KEY"}
    if key:
        env["CHROMA_API_KEY"] = key
    return subprocess.run([CHROMA_BIN, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_with_and_without_keys(keyed_server, tmp_path: Path) -> None:
    url = keyed_server.url
    denied = _cli("status", "--url", url)
    assert denied.returncode == 1 and "401" in _one_line(denied)
    assert _cli("status", "--url", url, "--api-key", KEYS[Scope.read]).returncode == 0
    assert _cli("op", "list", "--url", url, key=KEYS[Scope.read]).returncode == 0
    forbidden = _cli("op", "run", "sleep", "--url", url, "--no-wait", key=KEYS[Scope.read])
    assert forbidden.returncode == 1
    assert "403" in _one_line(forbidden) and "needs admin" in _one_line(forbidden)
    buffered = tmp_path / "buffer.jsonl"
    buffered.write_text('{"embedding_set": {"model": "auth-up"}, "dataset": "auth-up", '
                        '"split": "training", "id": "x", "embedding": [1.0, 2.0]}\n')
    refused = _cli("upload", str(buffered), "--url", url, "--api-key", KEYS[Scope.read])
    assert refused.returncode == 1 and "needs write" in _one_line(refused)
    uploaded = _cli("upload", str(buffered), "--url", url, key=KEYS[Scope.write])
    assert uploaded.returncode == 0, uploaded.stderr


# -- error bodies --------------------------------------------------------------------------


def test_a_store_failure_answers_without_paths_and_logs_them(
    database_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "private-store-dir"
    server = ServerProcess(env={"CHROMA_DATABASE_URL": database_url,
                                "CHROMA_STORAGE_URL": str(store)},
                           log_path=tmp_path / "server.log")
    server.start()
    try:
        with Client(server.url, progress=False) as client:
            client.log_many(np.ones((3, 2)), embedding_set={"model": "paths"},
                            dataset="paths-d", split="training", ids=["a", "b", "c"])
        shutil.rmtree(store)
        store.write_text("not a folder")  # reads fail with an OSError naming the path
        answer = httpx.get(f"{server.url}/api/v1/datasets/paths-d/records",
                           params={"include_embeddings": "true"},
                           headers={"x-request-id": "req-42"})
        # /ready reuses a store probe for PROBE_TTL_S (2 s): wait for the next probe.
        answers: list[httpx.Response] = []
        wait_for(lambda: answers.append(httpx.get(f"{server.url}/ready")) or
                 answers[-1].status_code == 503, 30, "/ready to see the broken store")
        ready = answers[-1]
    finally:
        server.stop()
    assert answer.status_code == 503
    assert str(store) not in answer.text and "private-store-dir" not in answer.text
    assert "request id req-42" in answer.json()["message"]
    assert ready.status_code == 503 and "private-store-dir" not in ready.text
    assert ready.json()["checks"]["store"].startswith("unavailable")
    log = server.log_path.read_text()
    assert "req-42" in log and "private-store-dir" in log  # the detail is kept, server side
