"""An answer from a host that is not signed by the host's key over its status, body and the
request's nonce is a failed call: nobody on the path can make the backend adopt a VM with a
port they chose, nor believe a delete done (a VM running on, unbilled) by forging a 404.

The backend's real VMService and AgentClient talk through a transport standing for the
network: the honest agent's answers are signed by the host key; `forge` rewrites them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import vms
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import VM, Host
from kumulus.client import AgentClient
from kumulus.config import BackendSettings
from kumulus.core.errors import UnavailableError
from kumulus.core.signing import HDR_ANSWER_SIGNATURE, keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, vm
from tests.signed_agent import signed_by

Forge = Callable[[httpx.Request, httpx.Response], httpx.Response]
HOST_KEY = keypair_from_mnemonic(new_mnemonic())
OTHER_KEY = keypair_from_mnemonic(new_mnemonic())


def _honest(request: httpx.Request) -> httpx.Response:
    """An agent that creates whatever it is asked to and deletes only what it has."""
    if request.method == "POST" and request.url.path == "/v1/vms":
        return httpx.Response(
            201,
            json={
                "vmId": "a" * 16,
                "username": "alice",
                "sshHost": "127.0.0.1",
                "sshPort": 2222,
                "sshCommand": "ssh -p 2222 alice@127.0.0.1",
                "status": "Running",
                "state": "running",
                "cpu": 2,
                "memory": "4g",
                "disk": "20g",
                "createdAt": "2026-12-01T00:00:00Z",
            },
        )
    vm_id = request.url.path.rpartition("/")[2]
    if request.method == "DELETE" and vm_id == "0" * 16:
        return httpx.Response(404, json={"detail": "no VM", "code": "not_found"})
    return httpx.Response(200, json={"vmId": vm_id})


class Network(httpx.AsyncBaseTransport):
    """The network between backend and host, `forge` in the middle; `answers` keeps every
    honest (signed) answer it carried, for replays."""

    def __init__(self) -> None:
        self.forge: Forge | None = None
        self.answers: list[httpx.Response] = []
        self._agent = signed_by(HOST_KEY, _honest)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self._agent.handle_async_request(request)
        await resp.aread()
        self.answers.append(resp)
        return self.forge(request, resp) if self.forge else resp


def _answer(status: int, body: bytes, headers: httpx.Headers | dict[str, str]) -> httpx.Response:
    kept = {k: v for k, v in dict(headers).items() if k.lower() != "content-length"}
    return httpx.Response(status, content=body, headers=kept)


def _tampered_body(_: httpx.Request, resp: httpx.Response) -> httpx.Response:
    return _answer(resp.status_code, resp.content.replace(b"2222", b"2223"), resp.headers)


def _tampered_status(_: httpx.Request, resp: httpx.Response) -> httpx.Response:
    return _answer(404, resp.content, resp.headers)


def _unsigned_404(_: httpx.Request, resp: httpx.Response) -> httpx.Response:
    return _answer(404, b'{"detail": "no VM", "code": "not_found"}', {})


def _signed_by(key: Keypair, status: int, body: bytes) -> Forge:
    def forge(request: httpx.Request, _: httpx.Response) -> httpx.Response:
        return signed_by(key, lambda _: httpx.Response(status, content=body)).handle_request(
            request
        )

    return forge


NOT_FOUND = b'{"detail": "no VM", "code": "not_found"}'


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Session, vms.VMService, Network, Host]]:
    database = Database(f"sqlite:///{tmp_path / 'kumulus.db'}")
    migrate(database.engine)
    network = Network()
    monkeypatch.setattr(
        vms, "AgentClient", functools.partial(AgentClient, transport=network, deadline=10)
    )
    settings = BackendSettings(data_dir=tmp_path / "backend", heartbeat_ttl=30)
    with database.session() as db:
        on = host(db, account(db, "provider"))
        on.wallet_address = HOST_KEY.ss58_address  # the key its heartbeats are signed by
        db.commit()
        yield db, vms.VMService(db, settings, keypair_from_mnemonic(new_mnemonic())), network, on
    database.engine.dispose()


def _deleting(db: Session, on: Host) -> VM:
    row = vm(db, account(db, "developer"), on, on.registered_at)
    row.intended_state, row.actual_state = "deleted", "deleting"
    db.commit()
    return row


def _replayed_404(network: Network, service: vms.VMService, db: Session, on: Host) -> Forge:
    """A genuine signed 404, captured from the host's answer to another delete."""
    gone = _deleting(db, on)
    gone.agent_vm_id = "0" * 16
    db.commit()
    assert service.finish_delete(gone) and gone.actual_state == "deleted"
    captured = network.answers[-1]
    assert captured.status_code == 404 and HDR_ANSWER_SIGNATURE in captured.headers
    return lambda _, __: _answer(404, captured.content, captured.headers)


FORGED_DELETES = ["unsigned", "another key", "replayed", "tampered status"]


@pytest.mark.parametrize("how", FORGED_DELETES)
def test_a_forged_404_to_a_delete_leaves_the_vm_deleting(
    world: tuple[Session, vms.VMService, Network, Host], how: str
) -> None:
    db, service, network, on = world
    forges: dict[str, Callable[[], Forge]] = {
        "unsigned": lambda: _unsigned_404,
        "another key": lambda: _signed_by(OTHER_KEY, 404, NOT_FOUND),
        "replayed": lambda: _replayed_404(network, service, db, on),
        "tampered status": lambda: _tampered_status,
    }
    network.forge = forges[how]()
    leases = on.leases_completed
    victim = _deleting(db, on)
    assert service.finish_delete(victim) is False
    db.refresh(victim)
    db.refresh(on)
    assert victim.actual_state == "deleting" and on.leases_completed == leases
    # The honest answer, once it gets through, finishes the delete.
    network.forge = None
    assert service.finish_delete(victim) is True
    db.refresh(victim)
    assert victim.actual_state == "deleted"


@pytest.mark.parametrize("how", ["tampered body", "unsigned", "another key"])
def test_a_forged_answer_to_a_create_adopts_nothing(
    world: tuple[Session, vms.VMService, Network, Host], how: str
) -> None:
    db, service, network, on = world
    network.forge = {
        "tampered body": _tampered_body,
        "unsigned": lambda _, resp: _answer(resp.status_code, resp.content, {}),
        # A refusal it did not make would move the VM to another host, its lease failed.
        "another key": _signed_by(OTHER_KEY, 409, b'{"detail": "full", "code": "conflict"}'),
    }[how]
    placed = vm(db, account(db, "developer"), on, on.registered_at, state="running")
    placed.agent_vm_id, placed.actual_state, placed.metered_until = None, "pending", None
    db.commit()
    with pytest.raises(UnavailableError) as caught:
        service.deliver_create(placed)
    assert "refused" in caught.value.detail
    db.refresh(placed)
    db.refresh(on)
    assert (placed.agent_vm_id, placed.actual_state, placed.host_id) == (None, "pending", on.id)
    assert on.leases_failed == 0
    network.forge = None
    assert service.deliver_create(placed) is True
    adopted = db.get(VM, placed.id, populate_existing=True)
    assert adopted is not None and (adopted.agent_vm_id, adopted.ssh_port) == ("a" * 16, 2222)
