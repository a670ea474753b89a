"""One provider's agent that never answers must not stop metering, nor other hosts' stops.

A hostile provider needs only one VM of a broke developer (its own second account, once
the sign-up credit is spent) on its host, and an agent that accepts a stop and never
answers. The meter job records stops without calling any agent; the `stops` job sends them,
hosts in parallel, so the hanging host delays only its own VMs."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import vms
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Host
from tests.backend.billing_fixtures import account, host, vm

RELEASE = threading.Event()
ASKED = threading.Event()
HOSTILE_URL = "http://hostile.invalid:8000"


class Agent:
    """The hostile host's agent hangs on a stop; every other host's agent confirms it."""

    confirmed: list[str] = []  # noqa: RUF012 - shared by the instances of one test

    def __init__(self, base_url: str, *_: Any) -> None:
        self.hostile = base_url == HOSTILE_URL

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        if self.hostile:
            ASKED.set()
            RELEASE.wait(30)
        else:
            Agent.confirmed.append(vm_id)
        return SimpleNamespace(vm_id=vm_id, status="Stopped")


def test_a_hanging_agent_stalls_neither_metering_nor_other_stops(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", Agent)
    Agent.confirmed = []
    RELEASE.clear()
    ASKED.clear()
    app = backend.app
    db_ = app.state.db  # type: ignore[attr-defined]
    jobs = app.state.jobs  # type: ignore[attr-defined]
    an_hour_ago = utcnow() - timedelta(hours=1)
    with db_.session() as db:
        hostile = host(db, account(db, "provider"))
        hostile.api_url = HOSTILE_URL
        honest = host(db, account(db, "provider"))
        vm(db, account(db, "developer"), hostile, an_hour_ago)  # broke: no credit at all
        broke_elsewhere = vm(db, account(db, "developer"), honest, an_hour_ago)
        paying = vm(db, account(db, "developer"), honest, an_hour_ago)
        from kumulus.backend import ledger  # a developer who can pay

        ledger.transfer(
            db, (ledger.CHAIN, None), (ledger.DEVELOPER, paying.account_id), 10**15, "deposit"
        )
        ids = (broke_elsewhere.id, paying.id)
        db.commit()

    report = jobs.run_now("meter").value
    assert report.stopped_for_funds == 2  # recorded for both broke developers, no agent asked
    assert not ASKED.is_set()

    stops = threading.Thread(target=lambda: jobs.run_now("stops"), daemon=True)
    stops.start()
    try:
        assert ASKED.wait(10), "the stops job never asked the hostile host"
        # The honest host's stop went out meanwhile, in parallel.
        # (The agent answering comes just before the confirmation is written: wait for it.)
        deadline = utcnow() + timedelta(seconds=10)
        while utcnow() < deadline:
            with db_.session() as db:
                elsewhere = db.get(VM, ids[0])
                assert elsewhere is not None
                if elsewhere.actual_state == "insufficient_funds":
                    break
            threading.Event().wait(0.05)
        assert Agent.confirmed and elsewhere.actual_state == "insufficient_funds"
        with db_.session() as db:
            row = db.get(VM, ids[1])
            assert row is not None and row.metered_until is not None
            metered_once = aware(row.metered_until)
            assert db.get(Host, hostile.id) is not None
        # Metering goes on while the hostile host hangs.
        jobs.run_now("meter")
        with db_.session() as db:
            row = db.get(VM, ids[1])
            assert row is not None and row.metered_until is not None
            assert aware(row.metered_until) > metered_once, "metering stalled behind one host"
    finally:
        RELEASE.set()
        stops.join(10)
