"""Background upkeep of one backend process. Every step is idempotent and claims its work
through the database, so any number of backend processes may run it at once."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import anchors, billing, leases, reputation
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.heartbeats import prune_heartbeats
from kumulus.backend.models import Vm
from kumulus.backend.nonces import prune_nonces
from kumulus.backend.payouts import PayoutWorker
from kumulus.backend.vms import VmService
from kumulus.chain.client import ChainClient, ChainError
from kumulus.config import BackendSettings
from kumulus.core.money import parse_amount

log = logging.getLogger(__name__)


@dataclass
class Report:
    deletes_finished: int = 0
    deletes_waiting: int = 0
    nonces_pruned: int = 0
    heartbeats_pruned: int = 0
    reputations: int = 0
    charged: int = 0  # planck metered this pass
    stopped_for_funds: int = 0
    deposits_credited: int = 0
    payouts_paid: int = 0
    anchored: int = 0


class Maintenance:
    """Finishes deletes on hosts that came back, prunes spent nonces and old heartbeats,
    and recomputes reputations every `reputation_interval` seconds."""

    def __init__(
        self,
        db: Database,
        settings: BackendSettings,
        keypair: Keypair,
        chain: ChainClient | None = None,
        payout_key: Keypair | None = None,
        anchor_key: Keypair | None = None,
    ) -> None:
        self._chain = chain
        self._anchor_key = anchor_key
        self._last_anchor = time.monotonic()  # the first digest after one full interval
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._db = db
        self._settings = settings
        self._keypair = keypair
        self.deposits = (
            DepositWatcher(db, chain, payout_key.ss58_address) if chain and payout_key else None
        )
        self.payouts = PayoutWorker(db, chain, payout_key) if chain and payout_key else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_reputation = 0.0

    def anchor(self, force: bool = False) -> int:
        """Every `anchor_interval`: digest the period and put it on chain."""
        if self._chain is None or self._anchor_key is None:
            return 0
        now = time.monotonic()
        if not force and now - self._last_anchor < self._settings.anchor_interval:
            with self._db.session() as s:  # still retry one that could not be sent
                if not leases.acquire(s, "anchors", self._owner, 300):
                    return 0
                return anchors.submit_pending(s, self._chain, self._anchor_key)
        self._last_anchor = now
        with self._db.session() as s:
            # One process digests and submits at a time (no overlapping or doubled anchors).
            if not leases.acquire(s, "anchors", self._owner, 300):
                return 0
            anchors.build(s)
            return anchors.submit_pending(s, self._chain, self._anchor_key)

    def _payout_schedule(self, force: bool) -> int | None:
        """The minimum for scheduled payouts when they are due this pass, else None. Due
        once per `payout_interval` across all processes and restarts: the schedule is a
        lease that nobody renews, so only its expiry lets the next round in."""
        minimum = parse_amount(self._settings.payout_minimum, self._settings.token_decimals)
        if force:
            return minimum
        with self._db.session() as s:
            due = leases.acquire(
                s, "payout-schedule", secrets.token_hex(8), self._settings.payout_interval
            )
        return minimum if due else None

    def run_once(
        self,
        force_reputation: bool = False,
        force_anchor: bool = False,
        force_payouts: bool = False,
    ) -> Report:
        report = Report()
        with self._db.session() as s:
            # Deletes a user asked for in the last seconds are still being done by their
            # request; take over only those that were deferred or left behind.
            stale = utcnow() - timedelta(seconds=30)
            pending = list(
                s.scalars(
                    select(Vm).where(
                        Vm.intended_state == "deleted",
                        Vm.actual_state != "deleted",
                        or_(Vm.actual_state == "deleting", Vm.updated_at < stale),
                    )
                )
            )
            service = VmService(s, self._settings, self._keypair)
            for vm in pending:
                try:
                    done = service.finish_delete(vm)
                except Exception as exc:  # one host's refusal must not stop the others
                    s.rollback()
                    log.warning("VM %s: delete still refused by its host: %s", vm.id, exc)
                    done = False
                if done:
                    report.deletes_finished += 1
                else:
                    report.deletes_waiting += 1
            self._meter_and_enforce(s, service, report)
            report.nonces_pruned = prune_nonces(s)
            report.heartbeats_pruned = prune_heartbeats(
                s, timedelta(hours=self._settings.heartbeat_retention_hours)
            )
            s.commit()
            now = time.monotonic()
            if force_reputation or now - self._last_reputation >= (
                self._settings.reputation_interval
            ):
                report.reputations = reputation.recompute(s)
                self._last_reputation = now
        # Chain work last: a chain that is away (or a bug in talking to it) must never
        # hold up metering, deletes and the rest above.
        if self.deposits is not None and self.payouts is not None:
            try:
                report.deposits_credited = self.deposits.scan()
                report.payouts_paid = self.payouts.run_once(self._payout_schedule(force_payouts))
                report.anchored = self.anchor(force=force_anchor)
            except ChainError as exc:
                log.warning("chain unavailable this pass: %s", exc)
            except Exception:
                log.exception("chain work failed this pass; retrying at the next")
        return report

    def _meter_and_enforce(self, s: Session, service: VmService, report: Report) -> None:
        """Charge every metered VM up to now; then stop (never delete) the running VMs of
        developers whose balance is used up."""
        vms = list(
            s.scalars(select(Vm).where(Vm.metered_until.is_not(None), Vm.actual_state != "deleted"))
        )
        for vm in vms:
            report.charged += billing.meter(s, vm, self._settings.platform_fee_bps)
        if not self._settings.billing_enforced:
            return
        broke = {
            vm.account_id
            for vm in vms
            if vm.intended_state == "running"
            and billing.balance(s, billing.DEVELOPER, vm.account_id) <= 0
        }
        for vm in vms:
            if vm.account_id not in broke or vm.intended_state != "running":
                continue
            s.refresh(vm)
            if vm.intended_state != "running":  # deleted or stopped meanwhile
                continue
            try:
                service.stop(vm)
            except Exception as exc:  # host away: it stays wanted-stopped and is retried
                s.rollback()
                log.warning("VM %s: stop for insufficient funds failed: %s", vm.id, exc)
            # Only over a stop: a delete that raced with this keeps winning.
            marked = s.execute(
                update(Vm)
                .where(Vm.id == vm.id, Vm.intended_state.in_(("running", "stopped")))
                .values(
                    intended_state="stopped",
                    actual_state="insufficient_funds",
                    failure_reason="stopped because the balance is used up; deposit, then start it",
                )
                .execution_options(synchronize_session=False)
            )
            s.commit()
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                continue
            report.stopped_for_funds += 1
            log.info("VM %s stopped: its developer's balance is used up", vm.id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.payouts is not None and not (self._thread and self._thread.is_alive()):
            try:  # only once this process surely stopped sending
                self.payouts.close()
            except Exception:  # the database is going away too; the lease just expires
                log.warning("could not release the payout lease; it expires by itself")

    def _run(self) -> None:
        while not self._stop.wait(self._settings.maintenance_interval):
            try:
                report = self.run_once()
            except Exception:
                log.exception("maintenance pass failed; retrying at the next interval")
                continue
            if report.deletes_finished:
                log.info("finished %d deferred VM deletes", report.deletes_finished)
