"""Routes that know who is calling before they parse what was sent.

FastAPI parses a route's JSON body before it runs the route's dependencies, so without
this an anonymous request with a malformed body is answered 422 (and its body parsed)
rather than 401. A dependency marked with `gated(gate)` names an async `gate` that
authenticates from the headers and the raw body (already bounded by
core/body_limit.py) and leaves what it found on `request.state`; `AuthFirstRoute` runs
the gates of every marked dependency of a route before FastAPI's own handler reads the
body, and the dependency itself then only picks up the gate's result.

Gates run on the event loop: they must hand blocking work (database, files, signature
checks) to threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

Gate = Callable[[Request], Awaitable[None]]
_F = TypeVar("_F", bound=Callable[..., Any])
_GATE = "__kumulus_gate__"


def gated(gate: Gate) -> Callable[[_F], _F]:
    """Mark a dependency as one whose caller `gate` authenticates first (on routes of an
    `AuthFirstRoute` router); `gate` raises the 401 itself."""

    def mark(dependency: _F) -> _F:
        setattr(dependency, _GATE, gate)
        return dependency

    return mark


def gates_of(dependant: Dependant) -> list[Gate]:
    """The gates of the marked dependencies of a route (its parameters' dependencies, at
    any depth), each once, outermost first."""
    found: list[Gate] = []
    pending = list(dependant.dependencies)
    while pending:
        dep = pending.pop(0)
        gate = getattr(dep.call, _GATE, None)
        if gate is not None and gate not in found:
            found.append(gate)
        pending.extend(dep.dependencies)
    return found


class AuthFirstRoute(APIRoute):
    """An APIRoute that runs its dependencies' gates before its body is read as JSON or
    validated (routers: `APIRouter(route_class=AuthFirstRoute)`). Its OpenAPI is
    FastAPI's, unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = gates_of(self.dependant)
        if not gates:
            return handler

        async def authenticated_first(request: Request) -> Response:
            for gate in gates:
                await gate(request)
            return await handler(request)

        return authenticated_first


def ungated_body_paths(routes: Iterable[BaseRoute]) -> list[str]:
    """The paths of the routes whose body FastAPI parses (on the event loop) before any
    check can refuse the caller: a body parameter and no gate (sign-up, log-in, anything
    open whose body is its own proof). The backend bounds their bodies small. Exact
    paths: such a route with a path parameter raises ValueError (a limit by exact path
    could not name it)."""
    paths = []
    for route in routes:
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        if gates_of(route.dependant):
            continue
        if route.param_convertors:
            raise ValueError(
                f"route {route.path} parses a body before any check and has a path parameter"
            )
        paths.append(route.path)
    return paths
