"""Each operation of an OpenAPI document declares every 4xx it can answer, derived from the
route rather than written per route:

- its dependencies' marks (`core/access.py`): an auth dependency brings 401 (and 403 for a
  role), a rate limit 429, ...;
- its parameters: any parameter or body can be invalid (422), a path id can name nothing
  (404), a body can be too large (413);
- what the route itself declares for its service's refusals (`responses=refusals(409)`).

Server errors stay one `5XX` entry: which of them happens is not the caller's to act on
beyond `retry`. Every declared error answer is the `ErrorBody`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant

from kumulus.core.access import route_mark
from kumulus.core.schemas import ErrorBody

DESCRIPTIONS: dict[int, str] = {
    401: "Not authenticated: no, an invalid, expired or revoked credential.",
    402: "Not enough funds; `detail` says how much is missing.",
    403: "Authenticated, but not allowed (wrong role or origin).",
    404: "No such resource for this caller (another owner's resources are not found).",
    409: "The resource's state does not allow this now.",
    413: "The request body is too large.",
    422: "Invalid input; `fields` says which and why.",
    429: "Too many requests; retry after `Retry-After` seconds.",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the refusals a route's service may raise beyond what its
    parameters and dependencies imply (e.g. 409, 402)."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def statuses_of(dependant: Dependant) -> set[int]:
    """The 4xx statuses a route answers by construction (marks and parameters)."""
    found = set(route_mark(dependant).statuses)
    if dependant.path_params:
        found |= {404, 422}
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        found.add(422)
    if dependant.body_params:
        found |= {413, 422}
    for sub in dependant.dependencies:  # parameters of dependencies are the route's too
        found |= statuses_of(sub) - {404}
    return found


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], Dependant, bool]]:
    """(path, methods, dependant, include_in_schema) of every FastAPI route of `app`,
    through included routers."""
    iterate = getattr(routing, "iter_route_contexts", None)
    contexts: Any = iterate(app.routes) if iterate else app.routes
    for ctx in contexts:
        original = getattr(ctx, "original_route", ctx)
        if isinstance(original, routing.APIRoute):
            yield ctx.path_format, set(ctx.methods), ctx.dependant, original.include_in_schema


def _declare(doc: dict[str, Any], app: FastAPI) -> None:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, methods, dependant, in_schema in api_routes(app):
        if not in_schema:
            continue
        for method in methods:
            op = doc["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for status in sorted(statuses_of(dependant) | _declared_errors(responses)):
                # Replaces FastAPI's own 422 (HTTPValidationError), which we never answer.
                responses[str(status)] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ref}},
                    **({"headers": _RETRY_AFTER} if status == 429 else {}),
                }
            op["responses"] = dict(sorted(responses.items()))
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before the same request may succeed.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _declared_errors(responses: dict[str, Any]) -> set[int]:
    return {int(s) for s in responses if s.isdigit() and 400 <= int(s) < 500}


def install_declared_statuses(app: FastAPI) -> None:
    """Make `app`'s OpenAPI document declare each operation's statuses (see module doc)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _declare(generate(), app)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
