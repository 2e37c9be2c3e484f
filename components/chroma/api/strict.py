"""Unknown query parameters are a 422 on every route (DESIGN §13), not silently ignored.

One app-wide dependency, :func:`reject_unknown_query`, compares the request's query
parameter names with those its route declares (its own and its dependencies', read once
from FastAPI's dependency tree per route). A misspelt ``?curser=`` or a parameter of
another route then says so instead of answering as if it had not been sent.
Routes outside FastAPI's routing (``/docs`` and its assets, ``/openapi.json``) are not
checked: they take no parameters and are never called with a meaning for one.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from chroma.errors import InvalidInput

__all__ = ["declared_query_params", "reject_unknown_query"]

_DECLARED: dict[int, frozenset[str]] = {}
"""id(route) -> the query parameter names it declares (routes live as long as the app)."""


def declared_query_params(dependant: Dependant) -> frozenset[str]:
    """The query parameter names (aliases as sent) of a dependant and its dependencies."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(field.alias for field in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """422 naming the first query parameter the matched route does not take."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    declared = _DECLARED.get(id(route))
    if declared is None:
        declared = _DECLARED[id(route)] = declared_query_params(dependant)
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        takes = ", ".join(sorted(declared)) or "no query parameters"
        raise InvalidInput(f"unknown query parameter {unknown[0]!r}: "
                           f"{request.method} {route.path} takes {takes}",  # type: ignore[union-attr]
                           details={"unknown": unknown, "accepted": sorted(declared)})
