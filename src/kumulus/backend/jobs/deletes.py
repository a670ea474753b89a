"""Job `deletes`: have hosts confirm the deletes developers asked for.

A delete is recorded at once (nothing billed from then, the hold back) and tried by the
request's converge worker; one its host has not confirmed (away, failing) is tried again
here, with backoff, until the host removes the VM. Its capacity stays reserved on that
host until then."""

from __future__ import annotations

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.jobs.per_host import due, on_each_host
from kumulus.backend.models import VM
from kumulus.config import BackendSettings


def finish_deletes(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Try every pending delete whose backoff passed once; the number finished."""
    with db.session() as s:
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.intended_state == "deleted", VM.actual_state != "deleted", due()
            )
        ).all()
    return on_each_host(db, settings, keypair, rows, "delete")
