"""A developer has at most `max_vms` VMs that are not deleted: 409 `quota_exceeded` with the
limit, nothing placed and no money held; a deleted VM makes room."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from kumulus.backend import vms
from kumulus.backend.models import VM
from tests.backend.away_agent import AwayAgent
from tests.backend.billing_fixtures import account, host
from tests.backend.conftest import Actor
from tests.backend.limits_fixtures import client_of, settings_with
from tests.backend.test_quota_ssh_keys import assert_quota


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vms, "AgentClient", AwayAgent)
    AwayAgent.reset()


def test_the_third_vm_is_refused_until_one_is_deleted(
    tmp_path: Path, database_url: str, ssh_keypair: tuple[Path, str]
) -> None:
    with client_of(settings_with(tmp_path, database_url, max_vms=2)) as client:
        with client.app.state.db.session() as db:  # type: ignore[attr-defined]
            host(db, account(db, "provider"))
            db.commit()
        dev = Actor(client, "developer")
        body = {"username": "bob", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"}
        made = [client.post("/v1/vms", headers=dev.headers, json=body) for _ in range(2)]
        assert [r.status_code for r in made] == [201, 201], [r.text for r in made]
        assert_quota(client.post("/v1/vms", headers=dev.headers, json=body), 2, "VMs")
        with client.app.state.db.session() as db:  # type: ignore[attr-defined]
            assert db.scalar(select(func.count()).select_from(VM)) == 2
        vm_id = made[0].json()["id"]
        assert client.delete(f"/v1/vms/{vm_id}", headers=dev.headers).status_code in (202, 204)
        assert client.post("/v1/vms", headers=dev.headers, json=body).status_code == 201
