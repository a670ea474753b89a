"""GET /metrics of both apps: the app's own registry (`app.state.metrics`) in the
Prometheus text format, for the callers `core/metrics_access.py` admits; the token file
is `app.state.metrics_token_file` (None: loopback only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kumulus.core.access import Access, marked
from kumulus.core.errors import ForbiddenError
from kumulus.core.metrics_access import may_read


@marked(access=Access.ADMIN, statuses=(403,))
def metrics_reader(request: Request) -> None:
    """The machine's operator: a connection from a loopback address (the ASGI scope's
    peer, never a header), or a caller presenting the metrics token."""
    token_file = getattr(request.app.state, "metrics_token_file", None)
    if not may_read(request.scope, request.headers.get("authorization"), token_file):
        raise ForbiddenError(
            "metrics are served to callers on this machine (loopback) and to holders of the "
            "metrics token only"
        )


def metrics_router(tag: str) -> APIRouter:
    router = APIRouter(tags=[tag])

    @router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_reader)])
    def metrics(request: Request) -> Response:
        """Prometheus text format. 403 unless the connection comes from a loopback address
        or presents the metrics token (`Authorization: Bearer ...`)."""
        body = generate_latest(request.app.state.metrics)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return router
