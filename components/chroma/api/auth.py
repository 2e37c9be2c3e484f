"""API keys and scopes: who may call which route (DESIGN §11).

Owns: the scope every route needs (``ROUTE_SCOPES``, the one table; a route missing from
it needs ``admin`` and fails ``tests/unit/test_auth.py``; FastAPI's own ``/docs`` and
``/openapi.json`` are open and outside it), the key ring read from
``CHROMA_API_KEYS_FILE`` and ``CHROMA_API_KEYS`` (SHA-256 digests in memory, compared in
constant time, the file re-read when it changes), the FastAPI dependency that answers
401/403, the OpenAPI security requirements, and the start-up refusal to bind a
non-loopback address without keys. Called by ``chroma.api.app`` and the CLI.
Must not touch: anything a key unlocks; it only says yes or no. Never logs a key, nor a
line of a keys file (a mistyped line may be a key).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import compile_path

from chroma.errors import Forbidden, Unauthorized
from chroma.settings import Settings

__all__ = [
    "MIN_KEY_LENGTH",
    "ROUTE_SCOPES",
    "Guard",
    "InsecureBind",
    "InvalidKeys",
    "KeyRing",
    "KeySet",
    "Scope",
    "authorize",
    "check_startup",
    "document_security",
    "is_loopback",
    "key_lines",
    "make_guard",
    "parse_keys",
    "required_scope",
    "template_of",
]

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32
"""Shortest key accepted: ``chroma keys new`` makes 43 characters (256 random bits)."""

RECHECK_S = 1.0
"""The keys file is looked at (one ``stat``) at most this often."""

SCHEME = "ApiKey"


class Scope(IntEnum):
    """What a key may do; each scope includes the ones before it."""

    read = 1
    write = 2
    admin = 3


ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {
    # Open by design: probes of kubelets and load balancers carry no key.
    ("GET", "/health"): None,
    ("GET", "/ready"): None,
    # The web app's files hold no data; its API calls carry the key (chroma.api.webapp).
    ("GET", "/"): None,
    ("GET", "/ui/{path:path}"): None,
    ("GET", "/metrics"): Scope.read,  # open with CHROMA_METRICS_PUBLIC=true
    ("GET", "/api/v1/embeddingsets"): Scope.read,
    ("GET", "/api/v1/embeddingsets/{key}"): Scope.read,
    ("GET", "/api/v1/datasets"): Scope.read,
    ("GET", "/api/v1/datasets/{name}"): Scope.read,
    ("GET", "/api/v1/datasets/{name}/records"): Scope.read,
    ("GET", "/api/v1/datasets/{name}/records/{record_id}"): Scope.read,
    ("GET", "/api/v1/operations"): Scope.read,
    ("GET", "/api/v1/operations/{operation_id}"): Scope.read,
    ("GET", "/api/v1/status"): Scope.read,
    ("GET", "/api/v1/recommendations"): Scope.read,
    ("GET", "/api/v1/map"): Scope.read,
    ("POST", "/api/v1/query"): Scope.read,
    ("POST", "/api/v1/log"): Scope.write,
    ("POST", "/api/v1/datasets/{name}/records/delete"): Scope.write,
    ("DELETE", "/api/v1/datasets/{name}/records/{record_id}"): Scope.write,
    ("POST", "/api/v1/datasets/{name}/records/tags"): Scope.write,
    ("POST", "/api/v1/recommendations/labelled"): Scope.write,
    ("PUT", "/api/v1/datasets/{name}"): Scope.admin,
    ("POST", "/api/v1/operations"): Scope.admin,
    ("POST", "/api/v1/operations/{operation_id}/cancel"): Scope.admin,
}
"""(method, path template) -> the scope it needs; ``None``: open to anyone."""


def required_scope(method: str, path: str) -> Scope | None:
    """The table's scope for a path template; a route missing from it needs ``admin``."""
    return ROUTE_SCOPES.get((method, path), Scope.admin)


def _matchers() -> dict[str, list[tuple[re.Pattern[str], str]]]:
    """Per method, each template's regex, literal segments before parameters (so
    ``/records/delete`` wins over ``/records/{record_id}``, should both take one method)."""
    by_method: dict[str, list[tuple[re.Pattern[str], str]]] = {}
    for method, template in sorted(ROUTE_SCOPES, key=lambda mt: mt[1].count("{")):
        regex, _, _ = compile_path(template)
        by_method.setdefault(method, []).append((regex, template))
    return by_method


_MATCHERS = _matchers()


def template_of(method: str, path: str) -> str | None:
    """The table's template matching a concrete request path, if any.

    The request's own path is matched against the table rather than read from the
    router's scope: FastAPI's nested routers expose only a router-relative path there."""
    for regex, template in _MATCHERS.get(method, ()):
        if regex.match(path):
            return template
    return None


# -- keys --------------------------------------------------------------------------------


class InvalidKeys(ValueError):
    """A keys file or ``CHROMA_API_KEYS`` cannot be read; the message names the line,
    never its text."""


@dataclass(frozen=True)
class KeySet:
    """Known keys as SHA-256 digests with their scopes: the keys themselves are not kept."""

    digests: tuple[tuple[bytes, Scope], ...] = ()

    def __len__(self) -> int:
        return len(self.digests)

    def scope_of(self, key: str) -> Scope | None:
        """The key's scope, or ``None`` if unknown. Every digest is compared (constant
        time each, no early exit), so the answer time says nothing about the keys."""
        digest = _digest(key)
        found: Scope | None = None
        for known, scope in self.digests:
            if hmac.compare_digest(known, digest) and (found is None or scope > found):
                found = scope
        return found

    def __add__(self, other: KeySet) -> KeySet:
        return KeySet(self.digests + other.digests)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(text: str, *, source: str, commas: bool = False) -> KeySet:
    """``<scope> <key>`` lines (``#`` comments, blank lines ignored) -> a :class:`KeySet`.

    ``commas``: commas separate entries too (the inline ``CHROMA_API_KEYS`` form)."""
    entries = text.replace(",", "\n").splitlines() if commas else text.splitlines()
    digests = []
    for number, line in enumerate(entries, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}, {'entry' if commas else 'line'} {number}"
        if len(words) != 2:
            raise InvalidKeys(f"{where}: expected '<scope> <key>' (2 words), got {len(words)}")
        scope_name, key = words
        if scope_name not in Scope.__members__:
            raise InvalidKeys(f"{where}: the scope must be read, write or admin")
        if len(key) < MIN_KEY_LENGTH:
            raise InvalidKeys(f"{where}: a key must be at least {MIN_KEY_LENGTH} characters "
                              f"(this one has {len(key)}); make one with `chroma keys new`")
        digests.append((_digest(key), Scope[scope_name]))
    return KeySet(tuple(digests))


class KeyRing:
    """The keys in force: ``CHROMA_API_KEYS`` plus the file's, which is re-read when it
    changes (``stat`` at most every ``RECHECK_S``). A file that cannot be read or parsed
    at start-up raises :class:`InvalidKeys`; later, the last good keys stay in force and
    a warning is logged (a half-written or deleted file must not lock everyone out)."""

    def __init__(self, inline: str | None, path: Path | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._inline = parse_keys(inline or "", source="CHROMA_API_KEYS", commas=True)
        self.enabled = path is not None or len(self._inline) > 0
        """Keys are required (a keys file is configured, or inline keys are given)."""
        self._stamp: tuple[int, int, int] | None = None
        self._file = KeySet()
        self._checked = clock()
        if path is not None:
            self._stamp, self._file = self._read(path)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        inline = settings.api_keys.get_secret_value() if settings.api_keys else None
        return cls(inline, settings.api_keys_file)

    def current(self) -> KeySet:
        """The keys in force now, re-reading the file if it changed."""
        if self.path is not None and self._clock() - self._checked >= RECHECK_S:
            self._checked = self._clock()
            self._reload(self.path)
        return self._inline + self._file

    def _reload(self, path: Path) -> None:
        try:
            if _stamp(path) == self._stamp:
                return
            self._stamp, self._file = self._read(path)
        except InvalidKeys as exc:
            log.warning("API keys not reloaded, the previous %d stay in force: %s",
                        len(self._file), exc)
            return
        log.info("API keys reloaded from %s: %d keys", path, len(self._file))

    @staticmethod
    def _read(path: Path) -> tuple[tuple[int, int, int], KeySet]:
        try:
            stamp = _stamp(path)
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidKeys(f"cannot read the API keys file {path}: "
                              f"{type(exc).__name__}") from None
        return stamp, parse_keys(text, source=str(path))


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when the file does (a Secret update swaps a symlink: a new inode)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidKeys(f"cannot read the API keys file {path}: "
                          f"{type(exc).__name__}") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


# -- the dependency ----------------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME,
    description="An API key: `Authorization: Bearer <key>`. Scopes read < write < admin, "
                "each including the ones before; the scope an operation needs is listed "
                "in its security requirement. Without keys configured (loopback only) "
                "every route is open.",
)


@dataclass(frozen=True)
class Guard:
    """What :func:`authorize` reads from ``app.state.auth``."""

    ring: KeyRing
    metrics_public: bool

    def needed(self, method: str, template: str | None) -> Scope | None:
        """``None`` for an open route; ``admin`` for one missing from the table."""
        if template is None:
            return Scope.admin
        if template == "/metrics" and self.metrics_public:
            return None
        return required_scope(method, template)


def make_guard(settings: Settings) -> Guard:
    """The guard of one app (raises :class:`InvalidKeys` on unreadable keys)."""
    return Guard(KeyRing.from_settings(settings), settings.metrics_public)


async def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """401 without a known key, 403 when its scope is short; nothing on open routes.

    ``async``: it hashes and compares, and at most once a second stats (rarely reads) a
    small file; cheaper on the loop than a thread hop (see ``chroma.api.deps``)."""
    guard: Guard = request.app.state.auth
    path = template_of(request.method, _route_path(request))
    needed = guard.needed(request.method, path)
    if needed is None or not guard.ring.enabled:
        return
    if credentials is None:
        raise Unauthorized("an API key is required: send the header "
                           "'Authorization: Bearer <key>' (CHROMA_API_KEY for the client and CLI)")
    scope = guard.ring.current().scope_of(credentials.credentials)
    if scope is None:
        raise Unauthorized("unknown API key")
    if scope < needed:
        raise Forbidden(f"this API key has scope {scope.name}; "
                        f"{request.method} {path} needs {needed.name}")


def _route_path(request: Request) -> str:
    """The path the router matched: without the ``root_path`` a proxy prefix adds."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def document_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Per-operation security requirements (with the scope as its role) and the 401/403
    answers, from ``ROUTE_SCOPES``; open operations get none."""
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            needed = required_scope(method.upper(), path)
            if needed is None:
                operation.pop("security", None)
                continue
            operation["security"] = [{SCHEME: [needed.name]}]
            operation["description"] = _with_scope_note(operation.get("description"), needed)
            responses = operation.setdefault("responses", {})
            responses["401"] = _error_response("No API key, or an unknown one.")
            responses["403"] = _error_response(
                f"The API key's scope does not include {needed.name}.")
    return schema


def _with_scope_note(description: str | None, needed: Scope) -> str:
    note = f"Needs an API key of scope `{needed.name}` or above."
    return f"{description}\n\n{note}" if description else note


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


# -- start-up ----------------------------------------------------------------------------


class InsecureBind(RuntimeError):
    """A non-loopback address without API keys and without ``--insecure``."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a name) is reachable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: Settings) -> KeyRing:
    """The keys ``chroma run`` / ``chroma serve`` will use, or an exception whose message
    says what to fix: :class:`InvalidKeys` or :class:`InsecureBind`."""
    ring = KeyRing.from_settings(settings)
    if not ring.enabled and not settings.insecure and not is_loopback(settings.host):
        raise InsecureBind(
            f"refusing to listen on {settings.host} without API keys: anyone who can reach "
            "it could read and change the data. Add keys (`chroma keys new --scope admin "
            ">> keys.txt`, then CHROMA_API_KEYS_FILE=keys.txt; or CHROMA_API_KEYS), bind "
            "127.0.0.1, or pass --insecure (CHROMA_INSECURE=true) to accept the risk."
        )
    if ring.enabled and len(ring.current()) == 0:
        log.warning("the API keys file %s holds no keys: every request but /health and "
                    "/ready will be refused until keys are added", settings.api_keys_file)
    return ring


def key_lines(scopes: Iterable[Scope]) -> list[str]:
    """Fresh random keys, one ``<scope> <key>`` line each (256 bits, URL-safe)."""
    import secrets

    return [f"{scope.name} {secrets.token_urlsafe(32)}" for scope in scopes]
