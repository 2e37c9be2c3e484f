"""``index_config(settings)``: the ``IndexConfig`` every process derives from its settings."""

from __future__ import annotations

from pathlib import Path

from chroma.index import IndexConfig
from chroma.settings import Settings

__all__ = ["index_config", "index_dir"]


def index_dir(settings: Settings) -> Path:
    """Where the embedded (edge) index lives: ``index_dir`` or ``data_dir/index``, absolute."""
    return (settings.index_dir or settings.data_dir / "index").resolve()


def index_config(settings: Settings) -> IndexConfig:
    """Edge shards under :func:`index_dir`, or the Qdrant server at ``qdrant_url`` (with
    ``qdrant_api_key`` when set).

    HNSW parameters are the library's defaults (measured in ``bench/query.py``); the
    embedded index may be quantized (``index_quantization``)."""
    if settings.index_backend == "edge":
        return IndexConfig(backend="edge", path=index_dir(settings),
                           quantization=settings.index_quantization)
    key = settings.qdrant_api_key
    return IndexConfig(backend="remote", url=settings.qdrant_url,
                       api_key=key.get_secret_value() if key is not None else None)
