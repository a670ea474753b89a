"""Job `stops`: have hosts confirm the stops the backend recorded.

A VM wanted `stopped` whose host has not confirmed it (actual `stopping`, or still `running`
by the host's heartbeats) gets its stop sent again, with backoff, until the host confirms:
stops for insufficient funds (the meter job only records them) and user stops whose first
try failed. Hosts are served in parallel, each one's VMs in turn (jobs/per_host.py)."""

from __future__ import annotations

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.jobs.per_host import due, on_each_host
from kumulus.backend.models import VM
from kumulus.backend.vms import PENDING_STOP
from kumulus.config import BackendSettings


def send_pending_stops(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Send every pending stop whose backoff passed once; the number the hosts confirmed."""
    with db.session() as s:
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.intended_state == "stopped",
                VM.actual_state.in_(PENDING_STOP),
                VM.host_id.is_not(None),
                VM.agent_vm_id.is_not(None),
                due(),
            )
        ).all()
    return on_each_host(db, settings, keypair, rows, "stop")
