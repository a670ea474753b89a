"""Create, start, stop and delete are intents: the API records each with its money and
answers at once (202); the host is called by the process's converge worker right away and
by the jobs, with backoff per VM, until it confirms. Nothing waits on a host unless the
client asks to (`Prefer: wait=N`), and the developer never pays for what the host has not
done: a start not confirmed is billed at the stopped rate, a stop from the moment it is
asked for."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import billing, vms
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.converge import parse_wait
from kumulus.backend.models import VM
from tests.backend.away_agent import AwayAgent
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", AwayAgent)
    AwayAgent.reset()


def _no_wait(developer: Actor) -> dict[str, str]:
    return {"Authorization": f"Bearer {developer.token}"}


def _poll(backend: TestClient, developer: Actor, vm_id: str, state: str) -> dict[str, Any]:
    for _ in range(100):
        shown = backend.get(f"/v1/vms/{vm_id}", headers=_no_wait(developer))
        if shown.status_code == 200 and shown.json()["actualState"] == state:
            return shown.json()  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"VM {vm_id} never {state}: {shown.text}")


def _host(backend: TestClient) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        host(db, account(db, "provider"))
        db.commit()


def _create(backend: TestClient, key: str, headers: dict[str, str]) -> Any:
    resp = backend.post(
        "/v1/vms",
        headers=headers,
        json={"username": "bob", "sshKey": key, "cpu": 1, "memory": "1g"},
    )
    return resp


def _row(backend: TestClient, vm_id: str) -> VM:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.get(VM, vm_id)
        assert row is not None
        db.expunge(row)
        return row


def _tried(backend: TestClient, vm_id: str) -> None:
    """Wait until the request's worker has made its (failed) try."""
    for _ in range(200):
        if _row(backend, vm_id).converge_attempts >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"VM {vm_id}: its worker never tried")


def _due(backend: TestClient, vm_id: str) -> None:
    """Its backoff is over."""
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(update(VM).where(VM.id == vm_id).values(converge_after=None))
        db.commit()


def test_a_create_answers_once_placed_and_is_carried_out_after(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _host(backend)
    resp = _create(backend, ssh_keypair[1], _no_wait(developer))
    assert resp.status_code == 202, resp.text
    vm = resp.json()
    assert vm["actualState"] == "pending" and vm["hostId"] is not None  # placed, hold taken
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert billing.held_by(db, developer.id) > 0
    shown = _poll(backend, developer, vm["id"], "running")  # the worker created it
    assert shown["sshPort"] == 2222 and AwayAgent.calls == ["create"]
    assert _row(backend, vm["id"]).metered_until is not None  # paid for from then on


def test_a_create_whose_worker_is_lost_is_made_by_the_creates_job(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _host(backend)
    backend.app.state.converger.close()  # type: ignore[attr-defined]  # as if it died
    vm = _create(backend, ssh_keypair[1], _no_wait(developer)).json()
    assert AwayAgent.calls == [] and vm["actualState"] == "pending"
    assert backend.app.state.jobs.run_now("creates").value == 1  # type: ignore[attr-defined]
    assert AwayAgent.calls == ["create"]
    assert _poll(backend, developer, vm["id"], "running")["sshPort"] == 2222


def test_a_start_the_host_does_not_confirm_is_billed_stopped_and_sent_again(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _host(backend)
    vm_id = _create(backend, ssh_keypair[1], developer.headers).json()["id"]
    stopped = backend.post(f"/v1/vms/{vm_id}/stop", headers=developer.headers)
    assert stopped.status_code == 200 and stopped.json()["actualState"] == "stopped"

    AwayAgent.away = True
    resp = backend.post(f"/v1/vms/{vm_id}/start", headers=developer.headers)
    assert resp.status_code == 202, resp.text  # waited, but the host did not answer
    assert resp.json()["intendedState"] == "running"
    assert resp.json()["actualState"] == "stopped"  # what the host last did
    row = _row(backend, vm_id)
    assert row.start_requested_at is not None and row.converge_attempts == 1
    assert row.converge_after is not None and aware(row.converge_after) > utcnow()
    # Not running: it pays for its disk only, though its hold is sized for running.
    assert billing.rate_of(row) == billing.stopped_rate(row)
    assert backend.app.state.jobs.run_now("starts").value == 0  # type: ignore[attr-defined]
    assert AwayAgent.calls.count("start") == 1  # backing off

    AwayAgent.away = False
    _due(backend, vm_id)
    assert backend.app.state.jobs.run_now("starts").value == 1  # type: ignore[attr-defined]
    row = _row(backend, vm_id)
    assert (row.actual_state, row.start_requested_at, row.converge_attempts) == ("running", None, 0)
    assert billing.rate_of(row) == billing.running_rate(row)
    assert backend.app.state.jobs.run_now("starts").value == 0  # type: ignore[attr-defined]


def test_a_stop_is_billed_stopped_at_once_and_sent_until_confirmed(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _host(backend)
    vm_id = _create(backend, ssh_keypair[1], developer.headers).json()["id"]
    AwayAgent.away = True
    resp = backend.post(f"/v1/vms/{vm_id}/stop", headers=_no_wait(developer))
    assert resp.status_code == 202, resp.text
    assert (resp.json()["intendedState"], resp.json()["actualState"]) == ("stopped", "stopping")
    assert billing.rate_of(_row(backend, vm_id)) == billing.stopped_rate(_row(backend, vm_id))
    _tried(backend, vm_id)
    AwayAgent.away = False
    _due(backend, vm_id)
    assert backend.app.state.jobs.run_now("stops").value == 1  # type: ignore[attr-defined]
    assert _row(backend, vm_id).actual_state == "stopped"


def test_a_delete_gives_the_hold_back_at_once_and_finishes_after(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    _host(backend)
    vm_id = _create(backend, ssh_keypair[1], developer.headers).json()["id"]
    AwayAgent.away = True
    resp = backend.delete(f"/v1/vms/{vm_id}", headers=_no_wait(developer))
    assert resp.status_code == 202 and resp.json()["actualState"] == "deleting"
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert billing.held_by(db, developer.id) == 0
    _tried(backend, vm_id)
    AwayAgent.away = False
    _due(backend, vm_id)
    assert backend.app.state.jobs.run_now("deletes").value == 1  # type: ignore[attr-defined]
    assert backend.get(f"/v1/vms/{vm_id}", headers=_no_wait(developer)).status_code == 404


def test_waiting_is_asked_for_with_prefer_wait() -> None:
    assert parse_wait(None) == 0 and parse_wait("") == 0
    assert parse_wait("wait=10") == 10
    assert parse_wait("handling=lenient, wait=5") == 5
    assert parse_wait("respond-async, wait=10") == 0
    assert parse_wait("wait=100000") == 120  # bounded
    for junk in ("wait=nan", "wait=-3", "wait=x", "wait", "wait=inf"):
        assert parse_wait(junk) in (0, 120), junk


def test_backoff_grows_and_is_bounded() -> None:
    from kumulus.backend.converge import backoff

    delays = [backoff(n, 15).total_seconds() for n in range(1, 12)]
    assert 12 <= delays[0] <= 18 and 24 <= delays[1] <= 36
    assert max(delays) <= 600 * 1.2 and delays[-1] >= 600 * 0.8
    assert timedelta(seconds=delays[0]) < timedelta(seconds=delays[3])
