"""Job `creates`: resolve the creates their host did not answer in time.

A VM whose create got no answer (a slow or unreachable agent, or a backend that died while
waiting) stays placed on that host, with its hold and capacity, unbilled. This job asks the
same host again with the same idempotency key until it answers: the VM is adopted (billed
from then on) or, if the host refuses, its hold and capacity go back. It is never tried on
another host meanwhile, so a late create can never leave an unbilled VM with the
developer's key running somewhere. Hosts are served in parallel (jobs/per_host.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.jobs.per_host import on_each_host
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.client import CALL_DEADLINE
from kumulus.config import BackendSettings

# A create younger than this may still be waiting for its answer in the request that made
# it (agent calls end within CALL_DEADLINE): leave it to that request.
IN_FLIGHT = timedelta(seconds=CALL_DEADLINE + 10)


def resolve_creates(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Ask each host once about its unanswered creates; the number resolved."""
    with db.session() as s:
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.actual_state == "pending",
                VM.host_id.is_not(None),
                VM.agent_vm_id.is_(None),
                VM.intended_state != "deleted",
                VM.updated_at < utcnow() - IN_FLIGHT,
            )
        ).all()
    return on_each_host(
        db, settings, keypair, rows, VMService.resolve_create, "create not resolved yet"
    )
