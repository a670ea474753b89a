"""The backend's background jobs, run by kumulus.core.jobs.JobRunner (one thread each).

| job             | every                   | lease                                        |
|-----------------|-------------------------|----------------------------------------------|
| meter           | maintenance_interval    | exclusive (one process at a time)            |
| creates         | maintenance_interval    | exclusive                                    |
| starts          | maintenance_interval    | exclusive                                    |
| stops           | maintenance_interval    | exclusive                                    |
| deletes         | maintenance_interval    | exclusive                                    |
| prune           | maintenance_interval    | exclusive (replicas would delete the same    |
|                 |                         | rows at once, and wait on each other's locks)|
| promo-payouts   | maintenance_interval    | exclusive (limits hold under ledger locks);  |
|                 |                         | only with a promo budget and cap above 0     |
| reputation      | reputation_interval     | once per interval across processes           |
| deposits        | maintenance_interval    | exclusive                                    |
| payouts         | maintenance_interval    | exclusive, lease named `payout-sender`       |
| payout-schedule | payout_interval         | once per interval across processes           |
| anchors         | maintenance_interval    | exclusive (a digest per anchor_interval)     |
| payout-float    | maintenance_interval    | exclusive (the deposit key's nonces)         |

The chain jobs exist only with settlement on; a ChainError fails that job's run only. Each
runs only on the pinned chain (backend/chain_identity.py); payouts also stop while the
circuit breaker is tripped (backend/breaker.py).
An exclusive lease lasts `job_lease_ttl` (30 s) and the runner renews it while the run goes
on, so a replica that dies holds its jobs that long; each commit of the run is fenced by
its holding (backend/lease_fence.py): after another process took the lease over, the old
holder's commits fail and its run stops; the chain jobs also send no extrinsic unless
their holding surely stands (`check_lease(before_effect=True)`).
Lease names are the job names, except `payouts`' (`payout-sender`, the sender lease of old:
a replica of the previous version still excludes this one)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.hot_wallet import DepositSide
from kumulus.backend.jobs import (
    creates,
    deletes,
    deposits,
    meter,
    payout_float,
    payouts,
    promo_payouts,
    prune,
    reputation,
    starts,
    stops,
)
from kumulus.backend.jobs.anchors import AnchorJob
from kumulus.backend.jobs.lease import DbLease
from kumulus.backend.payouts import LEASE as PAYOUT_LEASE
from kumulus.backend.payouts import PayoutWorker
from kumulus.backend.promo_payouts import Budget
from kumulus.chain.client import ChainClient, ChainError
from kumulus.config import BackendSettings
from kumulus.core.jobs import Job, JobRunner, Lease, LeaseUse

FREQUENT = (
    "meter", "creates", starts.NAME, "stops", "deletes", "prune", "deposits", "payouts", "anchors",
    payout_float.NAME, promo_payouts.NAME,
)  # fmt: skip
ALL = (*FREQUENT, "reputation", payouts.SCHEDULE)


@dataclass
class BackendJobs:
    runner: JobRunner
    payouts: PayoutWorker | None = None
    anchors: AnchorJob | None = None

    def start(self) -> None:
        self.runner.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.runner.stop(timeout)


def backend_jobs(
    db: Database,
    settings: BackendSettings,
    keypair: Keypair,
    chain: ChainClient | None = None,
    payout_key: Keypair | None = None,
    anchor_key: Keypair | None = None,
    lease: Lease | None = None,
    deposit: DepositSide | None = None,
) -> BackendJobs:
    """The backend's jobs from settings (not started). With a chain and a payout key,
    `deposit` (where deposits land; never the payout key) is required. Raises ValueError for
    a job name in `job_intervals` / `job_timeouts` that does not exist."""
    unknown = set(settings.job_intervals) - set(FREQUENT)
    unknown |= set(settings.job_timeouts) - set(ALL)
    if unknown:
        raise ValueError(
            f"unknown job(s) {', '.join(sorted(unknown))} in job_intervals/job_timeouts; "
            f"intervals: {', '.join(FREQUENT)}; timeouts also: reputation, {payouts.SCHEDULE}"
        )
    lease = lease or DbLease(db)

    def every(name: str) -> float:
        return settings.job_intervals.get(name, settings.maintenance_interval)

    def timeout(name: str) -> float:
        return settings.job_timeouts.get(name, settings.job_timeout)

    poll = settings.maintenance_interval
    ttl = settings.job_lease_ttl
    jobs = [
        Job("meter", every("meter"), timeout("meter"),
            partial(meter.meter_and_enforce, db, settings), lease=lease, lease_ttl=ttl),
        Job("creates", every("creates"), timeout("creates"),
            partial(creates.resolve_creates, db, settings, keypair), lease=lease, lease_ttl=ttl),
        Job(starts.NAME, every(starts.NAME), timeout(starts.NAME),
            partial(starts.send_pending_starts, db, settings, keypair), lease=lease, lease_ttl=ttl),
        Job("stops", every("stops"), timeout("stops"),
            partial(stops.send_pending_stops, db, settings, keypair), lease=lease, lease_ttl=ttl),
        Job("deletes", every("deletes"), timeout("deletes"),
            partial(deletes.finish_deletes, db, settings, keypair), lease=lease, lease_ttl=ttl),
        Job("prune", every("prune"), timeout("prune"), partial(prune.prune, db, settings),
            lease=lease, lease_ttl=ttl),
        Job("reputation", settings.reputation_interval, timeout("reputation"),
            partial(reputation.recompute, db), lease=lease,
            lease_use=LeaseUse.ONCE_PER_INTERVAL, poll=poll),
    ]  # fmt: skip
    if Budget.of(settings).enabled:  # at 0, the default, promo earnings are never paid
        jobs.append(
            Job(promo_payouts.NAME, every(promo_payouts.NAME), timeout(promo_payouts.NAME),
                partial(promo_payouts.pay, db, settings), lease=lease, lease_ttl=ttl)
        )  # fmt: skip
    if chain is None or payout_key is None:
        return BackendJobs(JobRunner(jobs))  # settlement off: no chain jobs
    if deposit is None:
        raise ValueError("settlement needs a deposit address (deposits never go to the payout key)")
    watcher = DepositWatcher(db, chain, deposit.address)
    worker = PayoutWorker(db, chain, payout_key, daily_cap=settings.payout_daily_cap_planck)
    chain_errors = (ChainError,)
    jobs += [
        Job("deposits", every("deposits"), timeout("deposits"),
            partial(deposits.scan, watcher, db, chain, payout_key.ss58_address),
            lease=lease, lease_ttl=ttl, expected=chain_errors),
        Job("payouts", every("payouts"), timeout("payouts"), partial(payouts.send, worker),
            lease=lease, lease_ttl=ttl, lease_name=PAYOUT_LEASE, expected=chain_errors),
        Job(payouts.SCHEDULE, settings.payout_interval, timeout(payouts.SCHEDULE),
            partial(payouts.schedule, db, settings), lease=lease,
            lease_use=LeaseUse.ONCE_PER_INTERVAL, poll=poll),
        Job(payout_float.NAME, every(payout_float.NAME), timeout(payout_float.NAME),
            partial(payout_float.top_up, db, settings, chain, payout_key.ss58_address, deposit),
            lease=lease, lease_ttl=ttl, expected=chain_errors),
    ]  # fmt: skip
    anchor = None
    if anchor_key is not None:
        anchor = AnchorJob(db, chain, anchor_key, settings.anchor_interval)
        jobs.append(
            Job(
                "anchors",
                every("anchors"),
                timeout("anchors"),
                anchor,
                lease=lease,
                lease_ttl=ttl,
                expected=chain_errors,
            )
        )
    return BackendJobs(JobRunner(jobs), worker, anchor)
