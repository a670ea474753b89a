"""The upkeep jobs, each on its own: `deletes` finishes deletes left behind, `prune` drops
spent nonces and old heartbeats, `reputation` runs once per interval across processes, and
the jobs' settings are checked."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from kumulus.backend import vms
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.jobs import backend_jobs
from kumulus.backend.models import VM, Heartbeat, Host, SeenNonce
from kumulus.config import BackendSettings
from tests.backend.billing_fixtures import account, host, vm


class GoneAgent:
    """An agent whose VM is already gone (404 on delete is fine)."""

    calls: list[str] = []  # noqa: RUF012 - shared on purpose: instances are made per call

    def __init__(self, *_: Any) -> None:
        pass

    def delete_vm(self, vm_id: str) -> None:
        GoneAgent.calls.append(vm_id)


def test_deletes_finishes_due_deletes_and_backs_off_the_others(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", GoneAgent)
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        dev, on = account(db, "developer"), host(db, account(db, "provider"))
        due = vm(db, dev, on, utcnow() - timedelta(hours=1))
        in_flight = vm(db, dev, on, utcnow())
        away = vm(db, dev, host(db, account(db, "provider"), online=False), utcnow())
        for row in (due, in_flight, away):
            row.intended_state, row.actual_state = "deleted", "deleting"
        in_flight.converge_after = utcnow() + timedelta(minutes=1)  # its worker is on it
        ids = (due.id, in_flight.id, away.id)
        db.commit()
    assert backend.app.state.jobs.run_now("deletes").value == 1  # type: ignore[attr-defined]
    with db_.session() as db:
        rows = [db.get(VM, i) for i in ids]
        assert [r.actual_state for r in rows] == ["deleted", "deleting", "deleting"]  # type: ignore[union-attr]
        assert rows[2].converge_attempts == 1  # type: ignore[union-attr]
        assert aware(rows[2].converge_after) > utcnow()  # type: ignore[union-attr,arg-type]
    # Tried again only once its backoff passed.
    assert backend.app.state.jobs.run_now("deletes").value == 0  # type: ignore[attr-defined]
    with db_.session() as db:
        assert db.get(VM, ids[2]).converge_attempts == 1  # type: ignore[union-attr]


def test_prune_drops_spent_nonces_and_old_heartbeats(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        on = host(db, account(db, "provider"))
        db.add_all(
            [
                SeenNonce(signer="s", nonce="old", expires_at=time.time() - 1),
                SeenNonce(signer="s", nonce="new", expires_at=time.time() + 600),
                Heartbeat(host_id=on.id, received_at=utcnow() - timedelta(days=3),
                          signed_at=0.0, payload={}),
                Heartbeat(host_id=on.id, received_at=utcnow(), signed_at=0.0, payload={}),
            ]
        )  # fmt: skip
        db.commit()
    report: Any = backend.app.state.jobs.run_now("prune").value  # type: ignore[attr-defined]
    assert (report.nonces, report.heartbeats) == (1, 1)
    with db_.session() as db:
        assert db.scalar(select(func.count()).select_from(SeenNonce)) == 1
        assert db.scalar(select(func.count()).select_from(Heartbeat)) == 1


def test_reputation_runs_once_per_interval_across_processes(backend: TestClient) -> None:
    app = backend.app
    db_ = app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        on = host(db, account(db, "provider"))
        db.execute(update(Host).where(Host.id == on.id).values(reputation=-1.0))
        db.commit()
        host_id = on.id
    other = backend_jobs(db_, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
    assert app.state.jobs.run_now("reputation").value == 1  # type: ignore[attr-defined]
    with db_.session() as db:
        assert db.get(Host, host_id).reputation >= 0  # type: ignore[union-attr]
        db.execute(update(Host).where(Host.id == host_id).values(reputation=-1.0))
        db.commit()
    assert not other.runner.run_now("reputation").ran  # done this interval, elsewhere
    with db_.session() as db:
        assert db.get(Host, host_id).reputation == -1.0  # type: ignore[union-attr]


def test_job_settings_are_checked(backend: TestClient, tmp_path: Any) -> None:
    app = backend.app
    settings = BackendSettings(
        data_dir=tmp_path, job_intervals={"meter": 2.5}, job_timeouts={"reputation": 9}
    )
    jobs = backend_jobs(app.state.db, settings, app.state.keypair)  # type: ignore[attr-defined]
    assert jobs.runner.names == [
        "meter", "creates", "starts", "stops", "deletes", "prune", "reputation"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown job"):
        backend_jobs(
            app.state.db,  # type: ignore[attr-defined]
            BackendSettings(data_dir=tmp_path, job_intervals={"reputation": 1}),
            app.state.keypair,  # type: ignore[attr-defined]
        )
    with pytest.raises(ValueError, match="must be > 0"):
        BackendSettings(job_timeouts={"meter": 0})
