"""GET /metrics: the backend's Prometheus metrics (backend/metrics.py), for this machine's
callers only: a scraper runs beside the backend, and the money and settlement state they
show are not for the public."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kumulus.backend.metrics import is_loopback
from kumulus.core.access import Access, marked
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.errors import ForbiddenError

router = APIRouter(tags=["meta"], route_class=AuthFirstRoute)


@marked(access=Access.ADMIN, statuses=(403,))
def loopback_only(request: Request) -> None:
    """The machine's operator: a connection from a loopback address (the ASGI scope's
    peer, never a header)."""
    if not is_loopback(request.scope):
        raise ForbiddenError("metrics are served to callers on this machine (loopback) only")


@router.get("/metrics", response_class=Response, dependencies=[Depends(loopback_only)])
def metrics(request: Request) -> Response:
    """Prometheus text format. 403 unless the connection comes from a loopback address."""
    body = generate_latest(request.app.state.metrics)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
