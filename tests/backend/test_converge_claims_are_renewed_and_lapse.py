"""A new intent is its converge worker's while the worker's process lives (SQLite and
PostgreSQL): the claim (`converge_after`, `converge_in_flight` ahead) is renewed through a
try of any length, so the jobs never drive the same VM meanwhile; once the process stops
renewing (killed), the VM is the jobs' within `converge_in_flight`; and a worker whose
claim lapsed before it started (a stalled process) leaves the VM to the jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from kumulus.backend import converge
from kumulus.backend.clock import utcnow
from kumulus.backend.converge import Converger
from kumulus.backend.db import Database, migrate
from kumulus.backend.jobs.per_host import due
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.config import BackendSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, vm

IN_FLIGHT = 0.6  # renewed every 0.2 s


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate(database.engine)
    yield database
    database.engine.dispose()


class SlowHost:
    """VMService.act stand-in: each try waits until `answer` is set, then confirms."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.calls = 0
        self.calling = threading.Event()

    def act(self, _action: str) -> Callable[[VM], bool]:
        def call(_vm: VM) -> bool:
            self.calls += 1
            self.calling.set()
            assert self.answer.wait(20)
            return True

        return call


@pytest.fixture
def slow_host(monkeypatch: pytest.MonkeyPatch) -> SlowHost:
    fake = SlowHost()
    monkeypatch.setattr(VMService, "act", lambda _service, action: fake.act(action))
    return fake


def _intent(db: Database, lapsed: bool = False) -> str:
    """A stopped VM asked to start, as the request's transaction records it."""
    with db.session() as s:
        row = vm(s, account(s, "developer"), host(s, account(s, "provider")), utcnow(), "stopped")
        row.intended_state = "running"
        converge.mark_intent(row, timedelta(seconds=-1 if lapsed else IN_FLIGHT))
        s.commit()
        return row.id


def _converger(db: Database, tmp_path: Path) -> Converger:
    settings = BackendSettings(data_dir=tmp_path, converge_in_flight=IN_FLIGHT)
    return Converger(db, settings, keypair_from_mnemonic(new_mnemonic()), workers=2)


def _jobs_see(db: Database, vm_id: str) -> bool:
    """Whether the jobs (creates/starts/stops/deletes) would take the VM now."""
    with db.session() as s:
        return s.scalar(select(VM.id).where(VM.id == vm_id, due())) is not None


def test_a_live_worker_keeps_its_vm_through_a_try_longer_than_its_claim(
    db: Database, tmp_path: Path, slow_host: SlowHost
) -> None:
    vm_id = _intent(db)
    converger = _converger(db, tmp_path)
    try:
        converger.kick(vm_id, "start")
        assert slow_host.calling.wait(10)
        until = time.monotonic() + 4 * IN_FLIGHT
        while time.monotonic() < until:
            assert not _jobs_see(db, vm_id)
            time.sleep(0.05)
        slow_host.answer.set()
        deadline = time.monotonic() + 10
        while not _jobs_see(db, vm_id):  # done: the claim is given up
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        slow_host.answer.set()
        converger.close()
    with db.session() as s:
        row = s.get(VM, vm_id)
        assert row is not None and row.converge_after is None
    assert slow_host.calls == 1


def test_a_killed_workers_vm_passes_to_the_jobs_within_its_claim(
    db: Database, tmp_path: Path, slow_host: SlowHost
) -> None:
    vm_id = _intent(db)
    converger = _converger(db, tmp_path)
    try:
        converger.kick(vm_id, "start")
        assert slow_host.calling.wait(10)
        time.sleep(IN_FLIGHT)  # renewed meanwhile
        assert not _jobs_see(db, vm_id)
        converger.close()  # its renewals stop, as in a process killed mid-call
        stopped = time.monotonic()
        while not _jobs_see(db, vm_id):
            assert time.monotonic() - stopped < IN_FLIGHT + 1.0, "never passed to the jobs"
            time.sleep(0.02)
        # The last renewal came at most a third of the claim before the stop.
        assert time.monotonic() - stopped >= IN_FLIGHT * 0.5
    finally:
        slow_host.answer.set()


def test_a_worker_whose_claim_lapsed_leaves_the_vm_to_the_jobs(
    db: Database, tmp_path: Path, slow_host: SlowHost, caplog: pytest.LogCaptureFixture
) -> None:
    vm_id = _intent(db, lapsed=True)  # queued past its claim: the jobs may have it by now
    converger = _converger(db, tmp_path)
    try:
        with caplog.at_level(logging.INFO, logger="kumulus.backend.converge"):
            converger.kick(vm_id, "start")
            deadline = time.monotonic() + 10
            while "left to the jobs (its claim lapsed)" not in caplog.text:
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        slow_host.answer.set()
        converger.close()
    assert slow_host.calls == 0
    assert _jobs_see(db, vm_id)
