"""The parameters each operation kind takes: pydantic models, one per kind that has any.

``POST /api/v1/operations``, ``chroma op run --param`` and the handlers read the same
model (through the table in ``chroma.operations.kinds``). Unknown keys are kept, not
refused: an operation's params are stored and shown as given. So every value, known or
not, must survive ``jsonb`` and orjson (``check_json_document``: no NUL, numbers of
magnitude below 2**63), and every known number has a bound its handler can honour.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_SLEEP_S", "MIN_GRACE_S", "CompactParams", "NoParams", "RecommendParams", "SleepParams",
]

MAX_SLEEP_S = 3600.0
"""Longest ``sleep`` (a test kind): a worker slot held for longer is abuse, not a test."""

MIN_GRACE_S = 60.0
"""Shortest ``compact`` grace: a smaller one makes every compaction delete files readers
may still be opening, and a caller could churn the store with back-to-back compactions."""


class NoParams(BaseModel):
    """A kind that reads no parameters."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Imported here: the kinds table (and so this module) is read by the supervisor,
        # which must not load the ingest path's numpy.
        from chroma.ingest.validation import check_json_document

        check_json_document(data, "params")
        return data


class SleepParams(NoParams):
    seconds: float = Field(default=5.0, ge=0, le=MAX_SLEEP_S,
                           description="How long to sleep (at most an hour).")


class CompactParams(NoParams):
    small_file_rows: int = Field(default=100_000, ge=1, le=2**31 - 1,
                                 description="Files with fewer live rows are merged.")
    grace_s: float = Field(default=3600.0, ge=MIN_GRACE_S, le=10 * 365 * 86400,
                           description="Retired files (and leftovers no write claims) older "
                                       "than this are deleted (at least 60 s).")


class RecommendParams(NoParams):
    full: bool = Field(default=False, description="Rescore every production record.")
