"""HTTP latency by route template and status, for both apps' `/metrics`.

A pure ASGI middleware (no BaseHTTPMiddleware: it would buffer bodies and run the app in
another task). The route label is the matched route's template (`/v1/vms/{vm_id}`), read
from the scope the router filled in, never the raw path: a caller choosing paths must not
be able to make new series. Requests no route took are `unmatched`."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# Seconds: an API call is ms; a create waiting for its host (Prefer: wait) up to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "kumulus_http_request_duration_seconds",
        "HTTP requests by method, route template and status: duration until the last byte",
        ["method", "route", "status"],
        buckets=BUCKETS,
        registry=registry,
    )


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class HttpMetrics:
    """Observes every HTTP request's duration and status in `histogram`."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting one

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.histogram.labels(scope.get("method", ""), route_of(scope), str(status)).observe(
                time.perf_counter() - started
            )
