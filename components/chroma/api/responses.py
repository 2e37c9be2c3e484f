"""JSON responses rendered with orjson (fast for large pages of records and embeddings).

FastAPI deprecated its own ``ORJSONResponse``; this is the same few lines, ours.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["ORJSONResponse"]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
