"""Seeded synthetic data for the query-engine suites (records, clustered vectors, truth)."""

from __future__ import annotations

import numpy as np

from chroma.index import IndexedRecord

DATASETS = ("train-a", "train-b", "prod")
CLASSES = ("cat", "dog", "fox", None)
TAGS = ("blurry", "night", "reviewed", "edge-case")


def make_records(n: int, seed: int, *, uri_prefix: str = "s3://bucket/") -> list[IndexedRecord]:
    """``n`` records with varied payload: datasets, splits, classes, tags, timestamps."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        dataset = DATASETS[int(rng.integers(len(DATASETS)))]
        tag_count = int(rng.integers(0, 3))
        records.append(
            IndexedRecord(
                dataset=dataset,
                record_id=f"rec-{i:06d}",
                split="production" if dataset == "prod" else "training",
                input_uri=f"{uri_prefix}{dataset}/{i}.png",
                inference_class=CLASSES[int(rng.integers(len(CLASSES)))],
                label_class=CLASSES[int(rng.integers(len(CLASSES)))],
                tags=tuple(sorted({TAGS[int(t)] for t in rng.integers(0, len(TAGS), tag_count)})),
                logged_at=1_700_000_000.0 + float(rng.integers(0, 1_000_000)),
            )
        )
    return records


def gaussian_mixture(
    n: int, dimension: int, seed: int, *, clusters: int = 50, spread: float = 0.3
) -> np.ndarray:
    """Clustered float32 vectors: ``clusters`` random centres plus isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimension)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    noise = rng.normal(scale=spread, size=(n, dimension)).astype(np.float32)
    return centres[labels] + noise


def exact_distances(distance: str, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Brute-force distances in the convention of ``chroma.index.base``."""
    vectors = vectors.astype(np.float64)
    query = query.astype(np.float64)
    if distance == "cosine":
        normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return 1.0 - normed @ (query / np.linalg.norm(query))
    if distance == "dot":
        return -(vectors @ query)
    return np.linalg.norm(vectors - query, axis=1)
