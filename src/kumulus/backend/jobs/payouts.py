"""Jobs `payouts` (send pending payouts) and `payout-schedule` (scheduled payouts of
earnings, once per `payout_interval` across all processes and restarts).

`payouts` runs in one process at a time, under the exclusive lease `payout-sender` (fenced:
a sender that lost it commits and sends nothing more). `payout-schedule` runs
under a schedule lease nobody renews (lease name `payout-schedule`, as before jobs existed):
only its expiry lets the next round in. It only writes pending payouts, which the sender
then sends."""

from __future__ import annotations

from kumulus.backend.db import Database
from kumulus.backend.payouts import PayoutWorker, schedule_payouts
from kumulus.config import BackendSettings
from kumulus.core.money import parse_amount

SCHEDULE = "payout-schedule"


def send(worker: PayoutWorker) -> int:
    """Reconcile and send pending payouts; returns how many were paid."""
    return worker.run_once()


def schedule(db: Database, settings: BackendSettings) -> int:
    """Every provider with a linked wallet and at least the minimum earned gets a pending
    payout of it all; returns how many."""
    minimum = parse_amount(settings.payout_minimum, settings.token_decimals)
    with db.session() as s:
        return schedule_payouts(s, minimum, settings.payout_daily_cap_planck)
