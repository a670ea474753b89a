"""GET /metrics: the backend's Prometheus metrics (backend/metrics.py), for this machine's
callers and holders of the metrics token (core/metrics_route.py): the money and
settlement state they show are not for the public."""

from __future__ import annotations

from kumulus.core.metrics_route import metrics_router

router = metrics_router("meta")
