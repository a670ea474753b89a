"""Job `creates`: have hosts answer the creates they have not answered yet.

A placed VM (hold taken, capacity reserved, nothing billed) is created on its host by the
request's converge worker (backend/converge.py); when that host was slow or away, or the
backend died meanwhile, this job asks the same host again with the same idempotency key
until it answers: the VM is adopted (billed from then on) or, if the host refuses, placed
elsewhere or failed (VMService.deliver_create). It is never tried on another host while
its host is silent, so a late create can never leave an unbilled VM with the developer's
key running somewhere. A VM row whose request died before it was placed at all is retired
after `unplaced_create_grace` (vms.retire_unplaced)."""

from __future__ import annotations

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.jobs.per_host import due, on_each_host
from kumulus.backend.models import VM
from kumulus.backend.vms import retire_unplaced
from kumulus.config import BackendSettings


def resolve_creates(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Ask each host once about its unanswered creates whose backoff passed; the number
    resolved. First, retire created rows that no placement finished (vms.retire_unplaced)."""
    with db.session() as s:
        retire_unplaced(s, settings.unplaced_create_grace)
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.actual_state == "pending",
                VM.host_id.is_not(None),
                VM.agent_vm_id.is_(None),
                VM.intended_state != "deleted",
                due(),
            )
        ).all()
    return on_each_host(db, settings, keypair, rows, "create")
