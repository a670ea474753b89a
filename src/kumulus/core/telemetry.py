"""FastAPI's native OpenTelemetry, switched off for our apps.

FastAPI (>= 0.16x) asks the global OpenTelemetry providers on every request whether
telemetry is configured: a lookup in os.environ each time. Under load that was 18% of the
backend's time holding the GIL (py-spy on bench/api_load). Kumulus exports its own
Prometheus metrics (core/http_metrics.py, backend/metrics.py, agent/metrics.py) and traces
nothing, so the apps are built with it off."""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
