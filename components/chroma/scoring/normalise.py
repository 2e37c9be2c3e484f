"""Rank normalisation of a signal against a fixed reference sample.

A :class:`SignalReference` keeps the empirical distribution of a signal on reference
records (the training data, scored like production) as at most ``max_points`` distinct
values with their mid-rank CDF levels ``(#below + #equal / 2) / n``. Normalising maps a
value to its interpolated level, so:

* one production record can be normalised alone (the ``/log`` assessment), and batches
  of different refreshes are comparable until the reference is re-fitted;
* the map is continuous, non-decreasing everywhere and strictly increasing outside the
  ties of the reference, with values in (0, 1);
* beyond the reference range the level keeps increasing, exponentially approaching 1
  (or 0) with the reference's range as scale, so out-of-distribution records, which all
  land past the training maximum, stay ordered among themselves instead of tying at 1.

NaN stays NaN. Called by :mod:`chroma.scoring.combine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from chroma.errors import InvalidInput

__all__ = ["SignalReference"]

DEFAULT_MAX_POINTS = 1025
"""Distinct reference values kept: the interpolation error is below 1/1024 in level."""


@dataclass(frozen=True, eq=False)
class SignalReference:
    """Empirical CDF of one signal on reference records. Build with :meth:`fit`."""

    values: np.ndarray
    """Increasing distinct reference values (float64)."""
    levels: np.ndarray
    """Mid-rank CDF at each value, strictly increasing, in (0, 1)."""
    tail_scale: float
    """Distance past the range that moves the level 63 % of the way to 0/1 (> 0)."""
    count: int
    """Number of finite reference samples."""

    @classmethod
    def fit(cls, samples: np.ndarray, *, max_points: int = DEFAULT_MAX_POINTS) -> SignalReference:
        """Reference of the finite entries of ``samples``; raises if there are none."""
        data = np.asarray(samples, dtype=np.float64).ravel()
        data = np.sort(data[np.isfinite(data)])
        if data.size == 0:
            raise InvalidInput("a signal reference needs at least one finite value")
        values, first_index, counts = np.unique(data, return_index=True, return_counts=True)
        levels = (first_index + counts / 2.0) / data.size
        if values.size > max_points:
            keep = np.unique(np.linspace(0, values.size - 1, max_points).round().astype(np.int64))
            values, levels = values[keep], levels[keep]
        spread = float(values[-1] - values[0])
        scale = spread if spread > 0 else max(abs(float(values[0])), 1.0)
        return cls(values=values, levels=levels, tail_scale=scale, count=int(data.size))

    def normalise(self, values: np.ndarray | float) -> np.ndarray:
        """Levels in (0, 1) of ``values`` (any shape); NaN stays NaN."""
        shape = np.shape(values)
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        result = np.interp(array, self.values, self.levels)
        low, high = self.values[0], self.values[-1]
        above = array > high
        below = array < low
        result[above] = 1.0 - (1.0 - self.levels[-1]) * np.exp(
            -(array[above] - high) / self.tail_scale
        )
        result[below] = self.levels[0] * np.exp((array[below] - low) / self.tail_scale)
        result[np.isnan(array)] = np.nan
        return result.reshape(shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the catalog or an artifact header)."""
        return {
            "values": self.values.tolist(),
            "levels": self.levels.tolist(),
            "tail_scale": self.tail_scale,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalReference:
        """Inverse of :meth:`to_dict`."""
        values = np.asarray(data["values"], dtype=np.float64)
        levels = np.asarray(data["levels"], dtype=np.float64)
        if values.ndim != 1 or values.shape != levels.shape or values.size == 0:
            raise InvalidInput("a signal reference needs equal, non-empty values and levels")
        return cls(
            values=values,
            levels=levels,
            tail_scale=float(data["tail_scale"]),
            count=int(data["count"]),
        )
