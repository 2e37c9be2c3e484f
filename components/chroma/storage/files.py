"""Durable byte-level file access over fsspec, one class for local disk and S3.

A write returns only once the bytes are durable: on local disk the file is written to a
temporary name, fsync'd, renamed into place and the directory fsync'd; on S3 the PUT has
completed. Foreign errors are translated to :class:`chroma.errors.Unavailable` here.
"""

from __future__ import annotations

import io
import os
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from chroma.errors import NotFound, Unavailable
from chroma.settings import Settings

__all__ = ["FileStore", "open_store"]


class FileStore:
    """Files under one root (a local folder or an ``s3://bucket/prefix``), by relative path."""

    def __init__(self, root: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
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
        return pq.read_table(io.BytesIO(self.read_bytes(relpath)), columns=columns)

    def delete(self, relpath: str) -> None:
        """Remove a file; a missing file is not an error (sweeps may race)."""
        try:
            self.fs.rm_file(self.url(relpath))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise Unavailable(f"store delete failed for {relpath}: {exc}") from exc

    def list_files(self, prefix: str = "") -> list[str]:
        """Relative paths of every file below ``prefix`` (recursive)."""
        base = self.url(prefix).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise Unavailable(f"store listing failed: {exc}") from exc
        root = self.root if self.is_local else self.root.split("://", 1)[1]
        return [path[len(root) + 1 :] for path in found if not path.endswith(".tmp")]

    def check(self) -> None:
        """Raise :class:`Unavailable` unless the root can be listed (readiness probe)."""
        try:
            if self.is_local:
                if not os.path.isdir(self.root):
                    raise Unavailable(f"store folder {self.root} is missing")
            else:
                self.fs.ls(self.root, refresh=True)
        except FileNotFoundError:
            return  # an empty prefix on S3 is fine
        except OSError as exc:
            raise Unavailable(f"store not reachable: {exc}") from exc


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


def _write_local_durably(target: str, data: bytes) -> None:
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


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
