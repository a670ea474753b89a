"""Send one kind of agent call for many VMs, hosts in parallel, each host's VMs in turn.

Shared by the jobs that converge VMs on their hosts (`creates`, `stops`): every agent call
has a deadline (kumulus.client.AgentClient), so one host that hangs delays only its own
VMs; a host found away or unreachable is left for the next run after its first VM."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from substrateinterface import Keypair

from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.config import BackendSettings
from kumulus.core.errors import KumulusError

log = logging.getLogger(__name__)

MAX_HOSTS_AT_ONCE = 8
_HOST_AWAY = ("host_offline", "host_unreachable")


def on_each_host(
    db: Database,
    settings: BackendSettings,
    keypair: Keypair,
    rows: Iterable[tuple[str, str | None]],
    act: Callable[[VMService, VM], bool],
    not_yet: str,
) -> int:
    """Run `act` for each (VM id, host id) in `rows`; the number of VMs it returned True for.
    A KumulusError from `act` is logged ("VM X: {not_yet}: why") and tried next run."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for vm_id, host_id in rows:
        by_host[str(host_id)].append(vm_id)
    if not by_host:
        return 0

    def on_host(vm_ids: list[str]) -> int:
        done = 0
        with db.session() as s:
            service = VMService(s, settings, keypair)
            for vm_id in vm_ids:
                vm = s.get(VM, vm_id)
                if vm is None:
                    continue
                try:
                    done += act(service, vm)
                except KumulusError as exc:  # host away or refusing: next run
                    s.rollback()
                    log.info("VM %s: %s: %s", vm_id, not_yet, exc.detail)
                    if exc.error_code in _HOST_AWAY:
                        break  # the rest of this host's VMs would wait for nothing
        return done

    with ThreadPoolExecutor(min(MAX_HOSTS_AT_ONCE, len(by_host)), "per-host") as pool:
        return sum(pool.map(on_host, by_host.values()))
