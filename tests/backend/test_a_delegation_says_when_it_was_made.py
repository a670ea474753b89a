"""A delegation text says when it was made, and is used right after: the backend refuses one
made more than a day ago or later than the clock skew allows, and an older text that does
not say when it was made, each with how to make a new one."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.core.delegation import default_expiry
from kumulus.core.signing import Domain, sign_envelope, wallet_text
from tests.backend.conftest import Actor, delegate_host, link_wallet, register_payload


def _pending_host(backend: TestClient, provider: Actor, host_key: Keypair) -> str:
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = backend.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["hostId"])


def _key_state(backend: TestClient, provider: Actor, host_id: str) -> str:
    view = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    return str(view["hostKeyState"])


@pytest.mark.parametrize(
    ("made", "says"),
    [
        (timedelta(days=1, minutes=1), "more than a day ago"),  # the backend skew is 60 s
        (timedelta(minutes=-5), "in the future"),
    ],
    ids=["too-old", "future"],
)
def test_a_delegation_made_too_long_ago_or_in_the_future_is_refused(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
    made: timedelta,
    says: str,
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _pending_host(backend, provider, host_key)

    resp = delegate_host(backend, wallet, host_id, host_key, issued_at=utcnow() - made)

    assert resp.status_code == 422 and says in resp.json()["detail"], resp.text
    assert _key_state(backend, provider, host_id) == "pending"
    assert delegate_host(backend, wallet, host_id, host_key).status_code == 200


def test_a_delegation_text_without_when_it_was_made_is_refused(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _pending_host(backend, provider, host_key)
    until: datetime = default_expiry()
    old_form = wallet_text(
        Domain.DELEGATION,
        f"host {host_id} may sign with key {host_key.ss58_address} "
        f"until {until:%Y-%m-%dT%H:%M:%SZ}",
    )
    signature = "0x" + bytes(wallet.sign(old_form.encode())).hex()

    resp = backend.post("/v1/hosts/delegation", json={"message": old_form, "signature": signature})

    assert resp.status_code == 422, resp.text
    assert "does not say when it was made" in resp.json()["detail"]
    assert "kumulus agent delegate" in resp.json()["detail"]
    assert _key_state(backend, provider, host_id) == "pending"


def test_the_text_to_sign_is_made_now(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = _pending_host(backend, provider, host_key)
    before = utcnow().replace(microsecond=0)

    shown = backend.get(f"/v1/provider/hosts/{host_id}/delegation", headers=provider.headers)

    message = shown.json()["message"]
    made = datetime.strptime(message.split(" from ")[1].split()[0], "%Y-%m-%dT%H:%M:%SZ")
    assert before.replace(tzinfo=None) <= made <= utcnow().replace(tzinfo=None)
