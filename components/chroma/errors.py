"""The one exception family of Chroma.

Every component raises these (translating foreign errors at its edge, chaining the
cause); the API maps them to HTTP status codes in one place (``chroma.api.errors``)::

    ChromaError
    ├── InvalidInput        422      the caller must fix the request
    │   ├── MalformedBody   400      empty body, malformed JSON or Arrow
    │   ├── UnsupportedType 415      a Content-Type we do not read
    │   └── PayloadTooLarge 413
    ├── Unauthorized        401      no API key, or one the server does not know
    ├── Forbidden           403      a known API key whose scope does not cover the route
    ├── NotFound            404
    ├── Conflict            409      e.g. a dataset bound to another embedding set
    └── Unavailable         503      a backing service (catalog, store, index) is down
        ├── Unreachable     503      it did not answer (refused, timed out): retry later
        └── UnsupportedVersion 503   it answers, but runs a version we do not support
"""

from __future__ import annotations

__all__ = [
    "ChromaError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "MalformedBody",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "UnsupportedType",
    "UnsupportedVersion",
]


class ChromaError(Exception):
    """Base of every error Chroma raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ChromaError):
    """The request is malformed or violates the data model; nothing was stored."""

    status_code = 422
    code = "invalid_input"


class MalformedBody(InvalidInput):
    """The body cannot be read at all (empty, malformed JSON, unreadable Arrow)."""

    status_code = 400
    code = "malformed_body"


class UnsupportedType(InvalidInput):
    """The request's Content-Type is not one the endpoint reads."""

    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the configured limit."""

    status_code = 413
    code = "payload_too_large"


class Unauthorized(ChromaError):
    """The request carries no API key, or one the server does not know (send
    ``Authorization: Bearer <key>``; the client reads ``CHROMA_API_KEY``)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(ChromaError):
    """The API key is known but its scope (read < write < admin) does not cover the route."""

    status_code = 403
    code = "forbidden"


class NotFound(ChromaError):
    """The named resource does not exist."""

    status_code = 404
    code = "not_found"


class Conflict(ChromaError):
    """The request contradicts what is already stored (e.g. a dataset's embedding set)."""

    status_code = 409
    code = "conflict"


class Unavailable(ChromaError):
    """A backing service (catalog, store, index) cannot be reached; retry later."""

    status_code = 503
    code = "unavailable"


class Unreachable(Unavailable):
    """The backing service did not answer (connection refused or reset, timeout, 502-504).

    The same request may succeed later unchanged, so a caller may retry it with backoff
    (unlike a plain ``Unavailable``, e.g. a refused API key or a failed collection)."""


class UnsupportedVersion(Unavailable):
    """The backing service answers but runs a version outside the supported range.

    Retrying cannot help: an operator must deploy a supported version. The message names
    the version found and the supported range."""
