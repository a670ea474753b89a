"""Carry out one kind of VM intent for many VMs, hosts in parallel, each host's VMs in turn.

Shared by the jobs that converge VMs on their hosts (`creates`, `starts`, `stops`,
`deletes`; backend/converge.py): every agent call has a deadline
(kumulus.client.AgentClient), so one host that hangs delays only its own VMs; a host found
away or unreachable is left for the next run after its first VM, and a host that answers,
slowly, gets at most `HOST_BUDGET_CALLS` deadlines of one run (its other VMs wait for the
next), so a slow host holds one of the run's threads for a bounded time whatever it does.
Only VMs whose backoff has passed are taken (`due`)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

from sqlalchemy import ColumnElement, or_
from substrateinterface import Keypair

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.converge import Action, Outcome, converge
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.config import BackendSettings
from kumulus.core.jobs import check_lease

MAX_HOSTS_AT_ONCE = 8
HOST_BUDGET_CALLS = 2  # a host's share of one run: this many call deadlines


def due() -> ColumnElement[bool]:
    """VMs whose next try may be made now."""
    return or_(VM.converge_after.is_(None), VM.converge_after <= utcnow())


def _still_due(vm: VM) -> bool:
    return vm.converge_after is None or aware(vm.converge_after) <= utcnow()


def on_each_host(
    db: Database,
    settings: BackendSettings,
    keypair: Keypair,
    rows: Iterable[tuple[str, str | None]],
    action: Action,
) -> int:
    """Try `action` once for each (VM id, host id) in `rows`; the number confirmed."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for vm_id, host_id in rows:
        by_host[str(host_id)].append(vm_id)
    if not by_host:
        return 0

    budget = HOST_BUDGET_CALLS * settings.agent_call_deadline

    def on_host(vm_ids: list[str]) -> int:
        done = 0
        started = time.monotonic()
        with db.session() as s:
            act = VMService(s, settings, keypair).act(action)
            for vm_id in vm_ids:
                if time.monotonic() - started >= budget:
                    break  # the rest wait for the next run: the other hosts' turn
                check_lease()  # a run whose lease moved on calls no agent
                vm = s.get(VM, vm_id)
                if vm is None or not _still_due(vm):
                    continue  # gone, or a converge worker claimed it since the run's read
                outcome = converge(s, act, vm, action, settings.maintenance_interval)
                done += outcome is Outcome.DONE
                if outcome is Outcome.HOST_AWAY:
                    break  # the rest of this host's VMs would wait for nothing
        return done

    with ThreadPoolExecutor(min(MAX_HOSTS_AT_ONCE, len(by_host)), "per-host") as pool:
        # Each host's thread runs in a copy of the run's context: its request id and its
        # lease holding (fenced commits) go along.
        runs = [pool.submit(copy_context().run, on_host, ids) for ids in by_host.values()]
        return sum(run.result() for run in runs)
