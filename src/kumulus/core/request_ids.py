"""Request ids: one id per HTTP request, taken from `X-Request-ID` when the caller sent a
valid one (the backend does, to its agents, so one create can be followed from the
backend's log into the agent's), made up otherwise, answered in the same header and set
for the request's logging (`RequestIdFilter`) and outgoing calls (`current`).

The id is a caller's text that lands in logs: only 1-64 characters of `[A-Za-z0-9._-]`
are taken; anything else is replaced by a fresh id, never echoed."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_current: ContextVar[str | None] = ContextVar("kumulus_request_id", default=None)


def valid(value: str | None) -> bool:
    return value is not None and _VALID.fullmatch(value) is not None


def new_id() -> str:
    return uuid.uuid4().hex


def current() -> str | None:
    """The id of the request (or background run) this code runs for, if any."""
    return _current.get()


@contextmanager
def bound(request_id: str | None = None) -> Iterator[str]:
    """Run a block under `request_id` (a new one if None or invalid): background work that
    calls agents names its calls too."""
    value = request_id if valid(request_id) else new_id()
    assert value is not None
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


class RequestIdMiddleware:
    """Pure ASGI: binds the request's id for the app below and answers it in `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break

        with bound(sent) as request_id:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)[HEADER] = request_id
                await send(message)

            await self.app(scope, receive, send_with_id)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or "-") to every record, for formats and JSON logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True
