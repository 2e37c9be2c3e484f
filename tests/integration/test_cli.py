"""The ``chroma`` command line as a person or a script meets it: a real ``chroma run``
(API and workers), the CLI as a subprocess with ``COLUMNS=80`` and its stdout a pipe.

* output: quiet (no log lines), tables within 80 columns with short keys that are
  accepted back, ``-o wide`` with full keys, ``-o json`` / ``-o yaml`` that parse;
  ``op run`` draws the operation's real progress (stderr on a terminal);
* errors: every failure is exactly one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import CHROMA_BIN, _fresh_database, free_port
from tests.integration.system import System

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ES = {"model": "cli-test", "version": "3"}
KEY = embedding_set_key(ES)
TRAIN, PROD = "cli-train", "cli-production-with-a-rather-long-dataset-name"


@pytest.fixture(scope="module")
def system(postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("cli")
    with _fresh_database(postgres_admin_dsn) as database_url:
        env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_WORKER_POLL_S": "0.2",
               "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "0"}
        chroma = System(tmp / "data", env, tmp / "run.log", free_port())
        chroma.start()
        _seed(chroma.url)
        yield chroma
        chroma.stop()


def _seed(url: str) -> None:
    rng = np.random.default_rng(3)
    with Client(url, progress=False) as client:
        labels = rng.integers(0, 2, size=200)
        client.log_many(rng.normal(size=(200, 8)) + labels[:, None] * 4, embedding_set=ES,
                        dataset=TRAIN, split="training",
                        ids=[f"t{i}" for i in range(200)],
                        label_classes=[["cat", "dog"][c] for c in labels])
        client.log_many(rng.normal(size=(40, 8)) * 3, embedding_set=ES, dataset=PROD,
                        split="production", ids=[f"p{i}" for i in range(40)],
                        inference_classes=["cat"] * 40,
                        input_uris=[f"s3://bucket/very/long/path/to/input-{i}.jpg"
                                    for i in range(40)],
                        scores=[{"cat": 0.55, "dog": 0.45}] * 40)


def cli(system: System | None, *args: str, columns: int = 80,
        **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a script runs it: stdout and stderr pipes, COLUMNS set."""
    url = ["--url", system.url] if system is not None else []
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    return subprocess.run([CHROMA_BIN, *args, *url], capture_output=True, text=True,
                          timeout=120, env={**base, "COLUMNS": str(columns), **env})


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # quiet: no log lines, no progress bar in a pipe
    return done.stdout


@pytest.fixture(scope="module")
def queue_ready(system: System) -> None:
    """The labelling queue, scored: ``chroma op run recommend`` follows it to the end."""
    done = cli(system, "op", "run", "recommend", "--dataset", PROD)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout


LISTINGS = [
    ["status"],
    ["op", "list"],
    ["get", "embeddingsets"],
    ["get", "datasets"],
    ["get", "operations"],
    ["recommend", "--dataset", PROD, "--top", "10"],
    ["op", "get", "1"],
]


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_tables_fit_80_columns_when_piped(system, queue_ready, args: list[str]) -> None:
    out = ok(cli(system, *args))
    lines = out.splitlines()
    assert lines, out
    assert max(len(line) for line in lines) <= 80, out
    assert "{'" not in out and "INFO" not in out  # no raw dicts, no log lines
    assert "\x1b[" not in out  # no colour codes in a pipe
    if args[:2] != ["op", "get"]:  # (an operation's result may name sets whole)
        assert KEY not in out  # short keys only...
    if args[0] != "op":
        assert KEY[:12] in out  # ...but the set is there, by the prefix that works


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_json_and_yaml_parse_and_carry_full_keys(system, queue_ready, args: list[str]) -> None:
    as_json = json.loads(ok(cli(system, *args, "-o", "json")))
    as_yaml = yaml.safe_load(ok(cli(system, *args, "-o", "yaml")))
    assert type(as_json) is type(as_yaml) and as_json
    if args[0] in ("get", "recommend") and args[1:2] != ["operations"]:
        assert KEY in json.dumps(as_json) or args[0] == "recommend"


def test_wide_shows_full_keys(system, queue_ready) -> None:
    out = ok(cli(system, "get", "embeddingsets", "-o", "wide"))
    assert KEY in out
    assert KEY in ok(cli(system, "get", "datasets", "-o", "wide"))


def test_the_short_key_a_table_prints_is_accepted_back(system, queue_ready) -> None:
    table = ok(cli(system, "get", "embeddingsets")).splitlines()
    short = table[1].split()[0]
    assert KEY.startswith(short) and len(short) < len(KEY)
    by_key = json.loads(ok(cli(system, "recommend", "-e", short, "-o", "json")))
    by_fields = json.loads(ok(cli(system, "recommend", "--field", "model=cli-test",
                                  "--field", "version=3", "-o", "json")))
    by_dataset = json.loads(ok(cli(system, "recommend", "--dataset", PROD, "-o", "json")))
    assert by_key["items"] and by_key["items"] == by_fields["items"] == by_dataset["items"]
    ops = json.loads(ok(cli(system, "op", "list", "-e", short, "-o", "json")))
    assert ops and {op["embedding_set_key"] for op in ops} == {KEY}


def test_verbose_shows_the_requests_quiet_does_not(system) -> None:
    loud = cli(system, "status", "-v")
    assert loud.returncode == 0 and "HTTP Request: GET" in loud.stderr
    assert "HTTP Request" not in cli(system, "status").stderr


def test_op_run_draws_the_operations_real_progress(system) -> None:
    """On a terminal, the bar follows ``progress`` (reported with the worker's lease
    heartbeat, every 2 s): a 6 s operation shows values between 0% and 100%."""
    primary, secondary = pty.openpty()
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(primary, chunks), daemon=True)
    reader.start()  # read while it runs: a full pty would block the CLI's writes
    try:
        done = subprocess.run(
            [CHROMA_BIN, "op", "run", "sleep", "--param", "seconds=6", "--url", system.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, text=True,
            timeout=120, env={**os.environ, "COLUMNS": "80"})
    finally:
        os.close(secondary)
        reader.join(10)
        os.close(primary)
    drawn = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, drawn
    shown = {int(p) for p in re.findall(r"(\d+)%\|", drawn)}
    assert any(0 < p < 100 for p in shown), drawn
    assert "HTTP Request" not in drawn
    assert "succeeded" in done.stdout and "slept_s: 6" in done.stdout


def _read_all(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once every writer has closed
            return
        if not chunk:
            return
        chunks.append(chunk)


# -- errors: one line on stderr, non-zero exit ------------------------------------------------


def _files(tmp: Path) -> dict[str, Path]:
    malformed = tmp / "malformed.jsonl"
    good = {"embedding_set": ES, "dataset": "cli-up", "split": "training", "id": "u",
            "embedding": [1.0] * 8}
    malformed.write_text("\n".join([json.dumps(good), "", '{"id": "x", "embedding": [1,'])
                         + "\n")
    refused = tmp / "refused.jsonl"
    refused.write_text("\n".join(json.dumps({**good, "id": f"u{i}"}) for i in range(3))
                       + "\n" + json.dumps({**good, "id": "bad", "embedding": "nope"}) + "\n")
    return {"malformed": malformed, "refused": refused}


ERRORS: list[tuple[str, list[str], str]] = [
    ("server down", ["status", "--url", "http://127.0.0.1:{down}"], "cannot reach"),
    ("server down, op list", ["op", "list", "--url", "http://127.0.0.1:{down}"],
     "is it running?"),
    ("no such operation", ["op", "get", "987654"], "404"),
    ("cancel a finished one", ["op", "cancel", "1"], "409"),
    ("unknown kind", ["op", "run", "no-such-kind"], "422"),
    ("short key prefix", ["recommend", "-e", "abc"], "at least 4 characters"),
    ("unknown key prefix", ["recommend", "-e", "zzzzzz"], "no embedding set zzzzzz"),
    ("unknown dataset", ["recommend", "--dataset", "no-such-dataset"], "no-such-dataset"),
    ("no set has the fields", ["recommend", "--field", "model=nope"], "no embedding set has"),
    ("a field without value", ["get", "datasets", "--field", "model"], "NAME=VALUE"),
    ("two ways to name a set", ["op", "list", "-e", "abcd", "--dataset", "x"], "once"),
    ("no set named", ["recommend"], "name the embedding set"),
    ("unknown option", ["status", "--bogus"], "No such option"),
    ("not a number", ["op", "get", "first"], "op get --help"),
    ("missing argument", ["op", "run"], "Missing argument"),
    ("unknown command", ["statsu"], "statsu"),
    ("bad -o", ["status", "-o", "xml"], "xml"),
    ("upload: no such file", ["upload", "{tmp}/missing.jsonl"], "missing.jsonl"),
    ("upload: malformed line", ["upload", "{malformed}"], "malformed.jsonl:3: not valid JSON"),
    ("upload: refused record", ["upload", "{refused}"], "refused.jsonl:4: "),
]


@pytest.mark.parametrize(("case", "args", "says"), ERRORS, ids=[e[0] for e in ERRORS])
def test_every_error_is_one_line_and_a_non_zero_exit(
    system, tmp_path: Path, case: str, args: list[str], says: str
) -> None:
    names = {"down": str(free_port()), "tmp": str(tmp_path),
             **{k: str(v) for k, v in _files(tmp_path).items()}}
    args = [a.format(**names) for a in args]
    done = cli(None if "--url" in args else system, *args)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chroma"), lines
    assert says in lines[0], lines
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""
