"""Job `stops`: have hosts confirm the stops the backend recorded.

A VM wanted `stopped` whose host has not confirmed it (actual `stopping`, or still `running`
by the host's heartbeats) gets its stop sent again until the host confirms: stops for
insufficient funds (the meter job only records them) and user stops whose agent call failed.
Hosts are served in parallel, each one's VMs in turn, and every agent call has a deadline
(kumulus.client.AgentClient): one host that hangs delays only its own VMs' stops."""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.backend.vms import PENDING_STOP, VMService
from kumulus.config import BackendSettings
from kumulus.core.errors import KumulusError

log = logging.getLogger(__name__)

MAX_HOSTS_AT_ONCE = 8


def send_pending_stops(db: Database, settings: BackendSettings, keypair: Keypair) -> int:
    """Send every pending stop once; the number the hosts confirmed."""
    with db.session() as s:
        rows = s.execute(
            select(VM.id, VM.host_id).where(
                VM.intended_state == "stopped",
                VM.actual_state.in_(PENDING_STOP),
                VM.host_id.is_not(None),
                VM.agent_vm_id.is_not(None),
            )
        ).all()
    by_host: dict[str, list[str]] = defaultdict(list)
    for vm_id, host_id in rows:
        by_host[str(host_id)].append(vm_id)
    if not by_host:
        return 0

    def on_host(vm_ids: list[str]) -> int:
        confirmed = 0
        with db.session() as s:
            service = VMService(s, settings, keypair)
            for vm_id in vm_ids:
                vm = s.get(VM, vm_id)
                if vm is None:
                    continue
                try:
                    confirmed += service.send_pending_stop(vm)
                except KumulusError as exc:  # host away or refusing: next run
                    s.rollback()
                    log.info("VM %s: stop not confirmed yet: %s", vm_id, exc.detail)
                    if exc.error_code in ("host_offline", "host_unreachable"):
                        break  # the rest of this host's VMs would wait for nothing
        return confirmed

    with ThreadPoolExecutor(min(MAX_HOSTS_AT_ONCE, len(by_host)), "stops") as pool:
        return sum(pool.map(on_host, by_host.values()))
