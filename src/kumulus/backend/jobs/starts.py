"""Job `starts`: have hosts confirm the starts developers asked for.

A start is recorded with its running hold (backend/vms.py) and tried at once by the
request's converge worker; one its host has not confirmed (away, failing) is sent again
here, with backoff, until the host starts it or refuses. The VM pays its stopped rate
until then."""

from __future__ import annotations

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.jobs.per_host import due, on_each_host
from kumulus.backend.models import VM
from kumulus.config import BackendSettings

NAME = "starts"


def send_pending_starts(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Send every pending start whose backoff passed once; the number confirmed."""
    with db.session() as s:
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.intended_state == "running",
                VM.start_requested_at.is_not(None),
                VM.host_id.is_not(None),
                VM.agent_vm_id.is_not(None),
                due(),
            )
        ).all()
    return on_each_host(db, settings, keypair, rows, "start")
