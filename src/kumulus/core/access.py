"""Who may call a route, and which refusals it can answer, stated on its dependencies.

Every API route of both apps depends on exactly one *access* dependency: an auth
dependency (`current_developer`, the agent's `authenticate`, ...) or a marker (`Public`,
`AgentSigned`, `LoopbackOnly`) for routes that authenticate otherwise or not at all. A
dependency is marked with `@marked(access=..., statuses=...)`; `route_mark` collects the
marks of a route's whole dependency tree. The OpenAPI documents declare each route's
statuses from them (`core/openapi_statuses.py`), and tests/core/test_every_route_is_classified
refuses a route without an access class, so a new route cannot be left open by omission.
Other helpers attach limits the same way: a dependency marked `statuses=(429,)` makes every
route that uses it declare 429.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Depends
from fastapi.dependencies.models import Dependant

_ATTR = "__kumulus_mark__"
_F = TypeVar("_F", bound=Callable[..., Any])


class Access(StrEnum):
    PUBLIC = "public"  # anyone, no credentials
    ACCOUNT = "account"  # any signed-in account (either role)
    DEVELOPER = "developer"
    PROVIDER = "provider"
    AGENT_SIGNED = "agent-signed"  # the body is an envelope signed by a host's key
    ADMIN = "admin"  # the machine's operator: agent admin token or pinned backend; loopback


@dataclass(frozen=True)
class Mark:
    access: Access | None = None
    statuses: frozenset[int] = frozenset()


def marked(*, access: Access | None = None, statuses: Iterable[int] = ()) -> Callable[[_F], _F]:
    """Mark a dependency: routes using it belong to `access` and may answer `statuses`."""

    def mark(fn: _F) -> _F:
        setattr(fn, _ATTR, Mark(access, frozenset(statuses)))
        return fn

    return mark


def mark_of(call: Any) -> Mark | None:
    mark = getattr(call, _ATTR, None)
    return mark if isinstance(mark, Mark) else None


@dataclass(frozen=True)
class RouteMark:
    """What a route's dependency tree says: its access classes (a route must have exactly
    one) and the statuses its dependencies may answer."""

    access: frozenset[Access]
    statuses: frozenset[int]


def route_mark(dependant: Dependant) -> RouteMark:
    access: set[Access] = set()
    statuses: set[int] = set()
    stack = [dependant]
    while stack:
        dep = stack.pop()
        mark = mark_of(dep.call)
        if mark is not None:
            if mark.access is not None:
                access.add(mark.access)
            statuses |= mark.statuses
        stack.extend(dep.dependencies)
    # A role implies being signed in: the most specific class is the route's.
    if access & {Access.DEVELOPER, Access.PROVIDER}:
        access.discard(Access.ACCOUNT)
    return RouteMark(frozenset(access), frozenset(statuses))


# The markers are async so that FastAPI runs them on the event loop, not on a thread of
# the shared pool (heartbeats must never wait for one).
@marked(access=Access.PUBLIC)
async def public() -> None:
    """Marker: this route is open to anyone on purpose."""


@marked(access=Access.AGENT_SIGNED, statuses=(401, 404))
async def agent_signed() -> None:
    """Marker: the route verifies a host's signed envelope itself (it is in the body):
    401 for a bad signature, 404 for a host the signer does not speak for."""


Public = Depends(public)
AgentSigned = Depends(agent_signed)
