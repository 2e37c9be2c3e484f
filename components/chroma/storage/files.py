"""Durable byte-level file access over fsspec, one class for local disk and S3.

A write returns only once the bytes are durable: on local disk the file is written to a
temporary name (``<path>.<32 hex>.tmp``, see :func:`temporary_target`), fsync'd, renamed
into place and the directory fsync'd; a failed write removes its temporary file (one
left by a crash is the sweep's). On S3 the PUT has completed. Foreign errors are
translated to :class:`chroma.errors.Unavailable` here.

:meth:`FileStore.check` is the readiness probe: the root is reachable *and* writable
(a tiny probe file is written and removed; on local disk the free space is checked too),
its answer cached for :data:`PROBE_TTL_S` so a busy ``/ready`` costs one probe a second
or two.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import threading
import time
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from chroma.errors import NotFound, Unavailable
from chroma.settings import Settings

__all__ = ["FileStore", "open_store", "temporary_target"]

PROBE_TTL_S = 2.0
"""How long a readiness probe's answer (good or bad) is reused, in seconds."""

MIN_FREE_BYTES = 64 * 1024 * 1024
"""Below this much free space a local store is reported full (a group commit's file can
be tens of MB); a write would fail soon, so ``/ready`` says so first."""

PROBE_PREFIX = ".ready-probe"
"""Name prefix of the probe files :meth:`FileStore.check` writes and removes at the root."""

_TEMPORARY = re.compile(r"^(?P<target>.+)\.[0-9a-f]{32}\.tmp$")


class FileStore:
    """Files under one root (a local folder or an ``s3://bucket/prefix``), by relative path."""

    def __init__(
        self, root: str, *, storage_options: dict[str, Any] | None = None,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.root = root.rstrip("/")
        self.min_free_bytes = min_free_bytes
        self._probe_lock = threading.Lock()
        self._probed: tuple[float, Unavailable | None] | None = None
        self.is_local = "://" not in root or root.startswith("file://")
        protocol = "file" if self.is_local else root.split("://", 1)[0]
        self.fs: fsspec.AbstractFileSystem = fsspec.filesystem(
            protocol, **(storage_options or {})
        )
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)

    def url(self, relpath: str) -> str:
        """The full path of ``relpath`` under the root."""
        return f"{self.root}/{relpath}"

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write ``data`` to ``relpath`` durably; atomic: readers see all or nothing."""
        target = self.url(relpath)
        try:
            if self.is_local:
                _write_local_durably(target, data)
            else:
                self.fs.pipe_file(target, data)
        except OSError as exc:
            raise Unavailable(f"store write failed for {relpath}: {exc}") from exc

    def read_bytes(self, relpath: str) -> bytes:
        try:
            return self.fs.cat_file(self.url(relpath))
        except FileNotFoundError as exc:
            raise NotFound(f"no file {relpath} in the store") from exc
        except OSError as exc:
            raise Unavailable(f"store read failed for {relpath}: {exc}") from exc

    def write_table(self, relpath: str, table: pa.Table) -> int:
        """Encode ``table`` as parquet and write it durably; returns the size in bytes."""
        data = encode_parquet(table)
        self.write_bytes(relpath, data)
        return len(data)

    def read_table(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        # ParquetFile, not pq.read_table: the latter goes through pyarrow.dataset, which
        # loads the dataset, acero and substrait libraries (~4 MiB RSS per process).
        return pq.ParquetFile(io.BytesIO(self.read_bytes(relpath))).read(columns=columns)

    def exists(self, relpath: str) -> bool:
        """Whether the file is there; any doubt (a failed lookup) is :class:`Unavailable`,
        never False (fsspec's own ``exists`` answers False on any error)."""
        try:
            self.fs.info(self.url(relpath))
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise Unavailable(f"store lookup failed for {relpath}: {exc}") from exc

    def delete(self, relpath: str) -> None:
        """Remove a file; a missing file is not an error (sweeps may race)."""
        try:
            self.fs.rm_file(self.url(relpath))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise Unavailable(f"store delete failed for {relpath}: {exc}") from exc

    def list_files(self, prefix: str = "", *, temporary: bool = False) -> list[str]:
        """Relative paths of every file below ``prefix`` (recursive); the temporary files
        of local writes (in flight, or left by a crash) only if ``temporary``."""
        base = self.url(prefix).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise Unavailable(f"store listing failed: {exc}") from exc
        root = self.root if self.is_local else self.root.split("://", 1)[1]
        return [path[len(root) + 1 :] for path in found
                if temporary or not path.endswith(".tmp")]

    def check(self) -> None:
        """Raise :class:`Unavailable` unless the store is reachable and writable.

        Readiness probe; the answer is reused for :data:`PROBE_TTL_S` seconds."""
        with self._probe_lock:
            now = time.monotonic()
            if self._probed is None or now - self._probed[0] >= PROBE_TTL_S:
                self._probed = (now, self._probe())
            error = self._probed[1]
        if error is not None:
            raise error

    def _probe(self) -> Unavailable | None:
        name = f"{PROBE_PREFIX}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            if self.is_local:
                _probe_local(self.root, name, self.min_free_bytes)
            else:
                self.fs.pipe_file(self.url(name), b"ok")
                self.fs.rm_file(self.url(name))
        except Unavailable as exc:
            return exc
        except PermissionError as exc:
            return Unavailable(f"store {self.root} is not writable (read-only?): {exc}")
        except OSError as exc:
            return Unavailable(f"store {self.root} is not writable: {exc}")
        return None


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes; embeddings stored plain (floats do not compress), the rest zstd."""
    sink = pa.BufferOutputStream()
    compression = {name: "zstd" for name in table.column_names}
    if "embedding" in compression:
        compression["embedding"] = "none"
    pq.write_table(
        table,
        sink,
        compression=compression,
        use_dictionary=[c for c in table.column_names if c != "embedding"],
        write_statistics=["logged_at"] if "logged_at" in table.column_names else False,
    )
    return sink.getvalue().to_pybytes()


def temporary_target(relpath: str) -> str | None:
    """The path a local write's temporary file ``relpath`` becomes, or None if it is not
    one (the sweep decides from the target whether a ``.tmp`` file is still in flight)."""
    match = _TEMPORARY.match(relpath)
    return match["target"] if match else None


def _probe_local(root: str, name: str, min_free_bytes: int) -> None:
    if not os.path.isdir(root):
        raise Unavailable(f"store folder {root} is missing")
    stats = os.statvfs(root)
    if stats.f_flag & os.ST_RDONLY:
        raise Unavailable(f"store folder {root} is on a read-only file system")
    free = stats.f_bavail * stats.f_frsize
    if free < min_free_bytes:
        raise Unavailable(
            f"store folder {root} is full: {free} bytes free, below {min_free_bytes}")
    path = os.path.join(root, name)
    # Creating a file is what a write needs and what a read-only folder (or file
    # system, or a full disk's inode table) refuses; no fsync: this must stay cheap.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(path)


def _write_local_durably(target: str, data: bytes) -> None:
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)  # a failed write (disk full, I/O error) leaves nothing
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _remove_quietly(path: str) -> None:
    # Gone already, or the folder refuses: the sweep removes it later.
    with contextlib.suppress(OSError):
        os.unlink(path)


def open_store(settings: Settings) -> FileStore:
    """The store the settings name: local folder by default, S3 through s3fs for ``s3://``."""
    url = settings.resolved_storage_url
    if url.startswith("s3://"):
        options: dict[str, Any] = {}
        client_kwargs: dict[str, Any] = {}
        if settings.s3_endpoint_url:
            client_kwargs["endpoint_url"] = settings.s3_endpoint_url
        if settings.s3_region:
            client_kwargs["region_name"] = settings.s3_region
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        # Listings must see files other processes just wrote (orphan sweep, compaction).
        options["use_listings_cache"] = False
        return FileStore(url, storage_options=options)
    return FileStore(url)
