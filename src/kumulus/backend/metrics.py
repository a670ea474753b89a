"""Prometheus metrics of one backend app (`GET /metrics`, for callers on this machine).

Each app has its own `CollectorRegistry` (`app.state.metrics`), not prometheus_client's
global one: a test process builds many apps, and two apps in one process must not share
or collide on series.

Two kinds of metrics, two ways to add one:
- facts every backend process shares (settlement state, the ledger, money paid) live in
  the database, so `SharedStateCollector` reads them at scrape time: every replica reports
  the same truth, whichever process last ran the job that changed it. Add a family to
  `SharedStateCollector.collect` (keep it to cheap queries: it runs on every scrape);
- events of one process (requests, job runs) are ordinary prometheus_client metrics:
  create them with `registry=app.state.metrics`.

Who may read them is decided by `is_loopback`, from the connection's address (the ASGI
scope), never from a header a caller can write."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from ipaddress import ip_address
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kumulus.backend import promo_payouts
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database


class SharedStateCollector(Collector):
    """Metrics read from the database at each scrape (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        with self._db.session() as s:
            states = state.all_states(s)
            promo_paid = promo_payouts.paid_total(s)
        yield GaugeMetricFamily(
            "kumulus_payouts_breaker_tripped",
            "1 while the payout circuit breaker stops every payout (the ledger check fails)",
            value=int(state.BLOCKED_BREAKER in states),
        )
        yield GaugeMetricFamily(
            "kumulus_ledger_violations",
            "violations the last ledger check found (0 also before the first check)",
            value=int(states.get(state.LEDGER_VIOLATIONS) or 0),
        )
        yield GaugeMetricFamily(
            "kumulus_settlement_chain_mismatch",
            "1 while the chain is not the pinned one and settlement refuses to run on it",
            value=int(state.BLOCKED_CHAIN in states),
        )
        # A counter: it only grows (the rows it sums are never deleted).
        yield CounterMetricFamily(
            "kumulus_promo_paid_planck",
            "planck of promotional earnings the platform paid from its fees, ever",
            value=promo_paid,
        )


def registry(db: Database) -> CollectorRegistry:
    """A fresh registry for one app, with the shared-state metrics registered."""
    reg = CollectorRegistry(auto_describe=True)
    reg.register(SharedStateCollector(db))
    return reg


def is_loopback(scope: MutableMapping[str, Any]) -> bool:
    """Whether the connection comes from this machine. The address is the server's view
    of the peer (behind uvicorn's proxy-header handling, which trusts only local proxies);
    no address, or one that is not an IP (a test client's name), is not loopback."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return ip_address(str(client[0])).is_loopback
    except ValueError:
        return False
