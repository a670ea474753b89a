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

Who may read them is decided by `core/metrics_access.py`: loopback callers (the ASGI
scope's address, never a header), others only with the metrics token.

Per-process events the services report (placements, refusals, heartbeats) go through
`BackendEvents`, which services receive optionally (None in tests and tools that need no
metrics), so no service imports prometheus_client."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from kumulus.backend import promo_payouts
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database
from kumulus.backend.models import VM, Balance, ChainCursor, Payout, WorkerLease
from kumulus.core.metrics_access import is_loopback

__all__ = ["BackendEvents", "SharedStateCollector", "is_loopback", "registry"]


class SharedStateCollector(Collector):
    """Metrics read from the database at each scrape (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        with self._db.session() as s:
            states = state.all_states(s)
            promo_paid = promo_payouts.paid_total(s)
            balances = s.execute(
                select(Balance.account_type, func.sum(Balance.amount)).group_by(
                    Balance.account_type
                )
            ).all()
            payouts = s.execute(
                select(Payout.status, func.count(), func.sum(Payout.amount)).group_by(Payout.status)
            ).all()
            vms = s.execute(select(VM.actual_state, func.count()).group_by(VM.actual_state)).all()
            leases = s.execute(
                select(WorkerLease.name, WorkerLease.owner, WorkerLease.expires_at)
            ).all()
            cursors = s.execute(select(ChainCursor.name, ChainCursor.block_number)).all()
        yield from _ledger(balances)
        yield from _payouts(payouts)
        by_state = GaugeMetricFamily(
            "kumulus_vms", "VMs the backend knows, by actual state", labels=["state"]
        )
        for vm_state, count in vms:
            by_state.add_metric([vm_state], count)
        yield by_state
        holder = GaugeMetricFamily(
            "kumulus_job_lease_expires_timestamp_seconds",
            "leases held now, by job (lease name) and holder (host:pid:runner of the process)",
            labels=["job", "holder"],
        )
        # Leases are released after each run, so most of the time nobody holds one: the last
        # holder is what tells an operator which replica runs a job.
        last = GaugeMetricFamily(
            "kumulus_job_lease_last_holder",
            "each job lease's latest holder (host:pid:runner, `~run` for once-per-interval "
            "jobs): 1 while it holds the lease, 0 once released or lapsed",
            labels=["job", "holder"],
        )
        now = time.time()
        for name, owner, expires in leases:
            if expires > now:
                holder.add_metric([name, owner], expires)
            last.add_metric([name, owner], int(expires > now))
        yield holder
        yield last
        yield from _chain(states.get(state.CHAIN_HEAD), cursors)
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


def _ledger(balances: Iterable[tuple[str, object]]) -> Iterable[Metric]:
    total = GaugeMetricFamily(
        "kumulus_ledger_balance_planck",
        "sum of the running balances of each kind of ledger account (planck)",
        labels=["account_type"],
    )
    for account_type, amount in balances:
        total.add_metric([account_type], float(int(str(amount or 0))))
    yield total


def _payouts(rows: Iterable[tuple[str, int, object]]) -> Iterable[Metric]:
    count = GaugeMetricFamily("kumulus_payouts", "payouts by state", labels=["state"])
    amount = GaugeMetricFamily(
        "kumulus_payouts_planck", "planck of the payouts in each state", labels=["state"]
    )
    for status, n, total in rows:
        count.add_metric([status], n)
        amount.add_metric([status], float(int(str(total or 0))))
    yield count
    yield amount


def _chain(head: str | None, cursors: Iterable[tuple[str, int]]) -> Iterable[Metric]:
    """The finalized head the deposits job last saw and how far each watcher is behind it
    (absent while settlement is off or before the first scan)."""
    if head is None:
        return
    yield GaugeMetricFamily(
        "kumulus_chain_finalized_head", "the chain's finalized block, as last seen",
        value=int(head),
    )  # fmt: skip
    lag = GaugeMetricFamily(
        "kumulus_chain_head_lag_blocks",
        "finalized blocks not yet processed, by watcher (deposits)",
        labels=["watcher"],
    )
    for name, number in cursors:
        lag.add_metric([name], max(0, int(head) - number))
    yield lag


class BackendEvents:
    """Counters of what one backend process did: placements, refusals by reason,
    heartbeats accepted and refused by reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._placements = Counter(
            "kumulus_placements", "VMs placed on a host (reserved and held)", registry=registry
        )
        self._refusals = Counter(
            "kumulus_placement_refusals",
            "placements refused, by reason (no_host_fits, payment_required, ...)",
            ["reason"],
            registry=registry,
        )
        self._heartbeats = Counter(
            "kumulus_heartbeats",
            "signed heartbeats by outcome (accepted, refused) and reason (the refusal's code)",
            ["outcome", "reason"],
            registry=registry,
        )

    def placed(self) -> None:
        self._placements.inc()

    def refused(self, reason: str) -> None:
        self._refusals.labels(reason).inc()

    def heartbeat(self, refused: str | None = None) -> None:
        if refused is None:
            self._heartbeats.labels("accepted", "").inc()
        else:
            self._heartbeats.labels("refused", refused).inc()


def registry(db: Database) -> CollectorRegistry:
    """A fresh registry for one app, with the shared-state metrics registered."""
    reg = CollectorRegistry(auto_describe=True)
    reg.register(SharedStateCollector(db))
    return reg
