"""Replacing a linked payout wallet needs the password, cancels payouts not yet sent and
pauses payouts for the cool-down (24 h): nothing goes to the old wallet nor to the new one
until it ends, then everything earned goes to the new wallet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend import ledger
from kumulus.backend.clock import travel
from kumulus.backend.db import Database
from kumulus.backend.models import Payout
from kumulus.backend.payouts import PayoutWorker, request_payout_to_wallet
from kumulus.core.errors import ConflictError
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, earnings
from tests.backend.conftest import Actor
from tests.backend.fake_chain import FakeChain


def _link(client: TestClient, actor: Actor, wallet: Keypair, **extra: str) -> object:
    challenge = client.post("/v1/provider/wallet/challenge", headers=actor.headers).json()
    return client.post(
        "/v1/provider/wallet/link",
        headers=actor.headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
            **extra,
        },
    )


def test_relinking_needs_the_password_and_pauses_payouts(backend: TestClient) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    provider = Actor(backend, "provider")
    old, new = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    first = _link(backend, provider, old)  # a first wallet needs no password, pays at once
    assert first.status_code == 200 and first.json()["walletPayoutsFrom"] is None  # type: ignore[attr-defined]
    with db.session() as s:
        earnings(s, provider.id, 10 * UNIT)
        s.commit()
        pending = request_payout_to_wallet(s, provider.id, 4 * UNIT, minimum=1)
        assert pending.address == old.ss58_address

    for extra in ({}, {"password": "not the password"}):
        refused = _link(backend, provider, new, **extra)
        assert refused.status_code == 403, refused.text  # type: ignore[attr-defined]
        assert refused.json()["code"] == "wrong_password"  # type: ignore[attr-defined]
    profile = backend.get("/v1/provider/profile", headers=provider.headers).json()
    assert profile["walletAddress"] == old.ss58_address

    relinked = _link(backend, provider, new, password=provider.password)
    assert relinked.status_code == 200  # type: ignore[attr-defined]
    assert relinked.json()["walletAddress"] == new.ss58_address  # type: ignore[attr-defined]
    assert relinked.json()["walletPayoutsFrom"] is not None  # type: ignore[attr-defined]
    with db.session() as s:
        cancelled = s.get(Payout, pending.id)
        assert cancelled is not None and cancelled.status == "failed"  # refunded
        assert ledger.balance(s, ledger.PROVIDER, provider.id) == 10 * UNIT

    chain, key = FakeChain(), keypair_from_mnemonic(new_mnemonic())
    chain.balances[key.ss58_address] = 100 * UNIT
    worker = PayoutWorker(db, chain.client(), key)
    with travel(timedelta(hours=23, minutes=59)):
        assert worker.run_once(schedule_minimum=1) == 0  # paused: neither wallet is paid
        with db.session() as s, pytest.raises(ConflictError) as paused:
            request_payout_to_wallet(s, provider.id, UNIT, minimum=1)
        assert paused.value.error_code == "wallet_cooldown"
    with db.session() as s:
        assert s.scalar(select(Payout).where(Payout.status != "failed")) is None

    with travel(timedelta(hours=24, seconds=1)):
        assert worker.run_once(schedule_minimum=1) == 1
        profile = backend.get("/v1/provider/profile", headers=provider.headers).json()
        assert profile["walletPayoutsFrom"] is None
    with db.session() as s:
        paid = s.scalars(select(Payout).where(Payout.status == "paid")).one()
        assert paid.address == new.ss58_address and paid.amount == 10 * UNIT
    assert chain.balances.get(new.ss58_address) == 10 * UNIT
    assert not chain.balances.get(old.ss58_address)
