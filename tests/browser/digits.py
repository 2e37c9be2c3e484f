"""The browser tier's realistic data: scikit-learn's handwritten digits (1,797 images of
8x8 pixels, shipped with the package) as an embedding set whose records show their image.

* embeddings: the 64 pixel intensities (0-16), as a model's penultimate layer would be;
* ``input_uri``: the image as a PNG in a data URI (32x32, each pixel 4x4), encoded by
  :func:`png_gray` (no imaging library needed);
* training: ``TRAINING`` digits with their label; production: the rest, with the class
  and probabilities of a logistic regression fitted on the training digits (so a few are
  wrong), plus ``ODD`` inverted digits (white on black), the unfamiliar inputs that should
  top the queue and stand apart on the map.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ODD", "SCALE", "TRAINING", "Digits", "digits", "png_gray"]

TRAINING = 1000
ODD = 40
SCALE = 4


def png_gray(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of ``pixels`` (h, w) with values 0-255."""
    image = np.asarray(pixels, dtype=np.uint8)
    height, width = image.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in image)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(image: np.ndarray) -> str:
    """An 8x8 digit (0-16) as a 32x32 PNG data URI, ink dark on white."""
    big = np.kron(image.reshape(8, 8), np.ones((SCALE, SCALE)))
    return "data:image/png;base64," + base64.b64encode(
        png_gray(255 - big * (255 / 16))).decode()


@dataclass
class Split:
    ids: list[str]
    embeddings: np.ndarray
    input_uris: list[str]
    labels: list[str | None] = field(default_factory=list)
    predicted: list[str | None] = field(default_factory=list)
    scores: list[dict[str, float] | None] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)


@dataclass
class Digits:
    training: Split
    production: Split
    odd_ids: list[str]


def digits(training: int = TRAINING, odd: int = ODD, *, limit: int | None = None) -> Digits:
    """The seeded set (``limit``: only the first digits, for a lighter server)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    images, targets = data.data[:limit], data.target[:limit]
    training = min(training, len(images) * 2 // 3)
    odd = min(odd, len(images) - training)
    model = LogisticRegression(max_iter=3000).fit(images[:training] / 16, targets[:training])
    rng = np.random.default_rng(16)
    inverted = 16 - images[training:training + odd]
    production = np.vstack([images[training:], inverted])
    probabilities = model.predict_proba(production / 16)
    n_prod = len(images) - training
    prod_ids = [f"prod-{i:04d}" for i in range(n_prod)] + [f"odd-{i:03d}" for i in range(odd)]
    return Digits(
        training=Split(
            ids=[f"train-{i:04d}" for i in range(training)],
            embeddings=images[:training].astype(np.float32),
            input_uris=[data_uri(im) for im in images[:training]],
            labels=[str(t) for t in targets[:training]],
            tags=[[] for _ in range(training)],
        ),
        production=Split(
            ids=prod_ids,
            embeddings=production.astype(np.float32),
            input_uris=[data_uri(im) for im in production],
            predicted=[str(model.classes_[row.argmax()]) for row in probabilities],
            scores=[{str(c): float(p) for c, p in zip(model.classes_, row, strict=True)}
                    for row in probabilities],
            tags=[["inverted"] if i >= n_prod else [str(rng.choice(["batch-a", "batch-b"]))]
                  for i in range(n_prod + odd)],
        ),
        odd_ids=prod_ids[n_prod:],
    )
