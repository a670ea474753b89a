"""A create whose replica died between committing the VM's row and placing it, and that no
client retried with the same Idempotency-Key, is retired by the `creates` job once
`unplaced_create_grace` has passed: deleted with the reason, nothing reserved or charged,
and it no longer counts against the developer's VM quota. Younger rows (a
placement may still be under way) are left alone. Found by the chaos test on replicas."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import vms
from kumulus.backend.clock import utcnow
from kumulus.backend.jobs.creates import resolve_creates
from kumulus.backend.models import VM, Host, LedgerEntry
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor


def test_an_unplaced_row_is_retired_after_the_grace(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = backend.app
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        host_id = host(db, account(db, "provider")).id
        db.commit()
    app.state.converger.close()  # type: ignore[attr-defined]
    body = {"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"}
    ids = []
    with monkeypatch.context() as m:  # each request "dies" right after the row's commit
        m.setattr(vms.VMService, "_place_new", lambda self, vm: vm)
        for key in ("old", "young"):
            headers = {"Authorization": f"Bearer {developer.token}", "Idempotency-Key": key}
            made = backend.post("/v1/vms", headers=headers, json=body)
            assert made.status_code == 202, made.text
            ids.append(made.json()["id"])
    old, young = ids
    grace = app.state.settings.unplaced_create_grace  # type: ignore[attr-defined]
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(
            update(VM)
            .where(VM.id == old)
            .values(created_at=utcnow() - timedelta(seconds=grace + 1))
        )
        entries = db.query(LedgerEntry).count()
        db.commit()

    resolve_creates(app.state.db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]

    with app.state.db.session() as db:  # type: ignore[attr-defined]
        retired, left = db.get(VM, old), db.get(VM, young)
        h = db.get(Host, host_id)
        assert retired is not None and left is not None and h is not None
        assert (retired.intended_state, retired.actual_state) == ("deleted", "deleted")
        assert retired.failure_reason is not None and "create it again" in retired.failure_reason
        assert (retired.host_id, retired.reserved) == (None, False)
        assert (left.intended_state, left.actual_state, left.host_id) == (
            "running",
            "pending",
            None,
        )
        assert h.reserved_cpu == 0
        assert db.query(LedgerEntry).count() == entries  # nothing charged or held
    listed = backend.get("/v1/vms", headers=developer.headers).json()["items"]
    assert {v["id"]: v["intendedState"] for v in listed}.get(old) in (None, "deleted")
