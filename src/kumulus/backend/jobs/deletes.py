"""Job `deletes`: finish deletes whose host was away when they were asked for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.config import BackendSettings

log = logging.getLogger(__name__)

# Deletes a user asked for in the last seconds are still being done by their request; only
# those deferred (`deleting`) or left behind longer than this are taken over.
LEFT_BEHIND = timedelta(seconds=30)


@dataclass
class DeletesReport:
    finished: int = 0
    waiting: int = 0


def finish_deletes(db: Database, settings: BackendSettings, keypair: Keypair) -> DeletesReport:
    report = DeletesReport()
    with db.session() as s:
        pending = list(
            s.scalars(
                select(VM.id).where(
                    VM.intended_state == "deleted",
                    VM.actual_state != "deleted",
                    or_(VM.actual_state == "deleting", VM.updated_at < utcnow() - LEFT_BEHIND),
                )
            )
        )
        service = VMService(s, settings, keypair)
        for vm_id in pending:
            vm = s.get(VM, vm_id)
            if vm is None:
                continue
            try:
                done = service.finish_delete(vm)
            except Exception as exc:  # one host's refusal must not stop the others
                s.rollback()
                log.warning("VM %s: delete still refused by its host: %s", vm_id, exc)
                done = False
            if done:
                report.finished += 1
            else:
                report.waiting += 1
    if report.finished:
        log.info("finished %d deferred VM deletes", report.finished)
    return report
