"""The browser tier's seed: its tiny PNG encoder writes files a decoder reads back."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from tests.browser.digits import SCALE, data_uri, png_gray


def _decode(png: bytes) -> np.ndarray:
    """A strict reader of what png_gray writes: signature, chunk CRCs, filter 0 rows."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks[kind] = data
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (8, 0, 0) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (width + 1):(r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)
    return np.array([list(row[1:]) for row in rows], dtype=np.uint8)


def test_png_round_trips() -> None:
    pixels = np.arange(6 * 5, dtype=np.uint8).reshape(6, 5) * 8
    assert (_decode(png_gray(pixels)) == pixels).all()


def test_a_digit_becomes_a_scaled_dark_on_white_data_uri() -> None:
    digit = np.zeros(64)
    digit[0] = 16  # full ink, top-left pixel
    uri = data_uri(digit)
    assert uri.startswith("data:image/png;base64,") and len(uri) < 4096
    image = _decode(base64.b64decode(uri.split(",", 1)[1]))
    assert image.shape == (8 * SCALE, 8 * SCALE)
    assert (image[:SCALE, :SCALE] == 0).all() and (image[SCALE:, :] == 255).all()
