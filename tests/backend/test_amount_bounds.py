"""Bounds on prices and sizes: refused past them (422), a host on which a VM would cost
more than `max_vm_price_per_hour` does not fit (409); and amounts past 64 bits (the
largest charge, a huge deposit) are stored and added exactly on both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select, update
from substrateinterface import Keypair

from kumulus.backend import billing, ledger, vms
from kumulus.backend.clock import utcnow
from kumulus.backend.ledger_check import violations
from kumulus.backend.models import VM, Host, LedgerEntry
from kumulus.config import BackendSettings
from kumulus.core.money import INT64_MAX, hourly_price, largest_charge
from tests.backend.billing_fixtures import UNIT, account, host
from tests.backend.conftest import Actor, link_wallet, register_host

TIB = 1 << 40
MAX_PRICE = 1000 * UNIT  # the defaults of max_unit_price and max_vm_price_per_hour


def _vm(key: str, **over: Any) -> dict[str, Any]:
    return {"username": "bob", "sshKey": key, "cpu": 1, "memory": "1g", **over}


def test_prices_over_the_maximum_are_refused(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    ok = {"cpu": "1000", "memoryGib": "0.5", "diskGib": "0.01"}
    put = backend.put("/v1/provider/profile", headers=provider.headers, json={"prices": ok})
    assert put.status_code == 200, put.text
    over = {**ok, "memoryGib": "1000.000000000001"}
    put = backend.put("/v1/provider/profile", headers=provider.headers, json={"prices": over})
    assert put.status_code == 422 and "prices.memoryGib: at most 1000 UNIT" in put.json()["detail"]
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    patch = backend.patch(
        f"/v1/provider/hosts/{host_id}", headers=provider.headers,
        json={"prices": {**ok, "diskGib": "5000"}},
    )  # fmt: skip
    assert patch.status_code == 422 and "prices.diskGib" in patch.json()["detail"]
    assert patch.json()["code"] == "invalid"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"memory": "4.5t"}, "memory"),
        ({"disk": "65t"}, "disk"),
        ({"cpu": 257}, "cpu"),
        ({"maxPricePerHour": "1000.5"}, "maxPricePerHour"),
    ],
)
def test_vm_sizes_and_price_over_the_maximum_are_refused(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    over: dict[str, Any],
    field: str,
) -> None:
    resp = backend.post("/v1/vms", headers=developer.headers, json=_vm(ssh_keypair[1], **over))
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert db.scalars(select(VM)).first() is None  # nothing was made


def _big_host(backend: TestClient, prices: tuple[int, int, int]) -> str:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        on = host(db, account(db, "provider"))
        db.execute(
            update(Host)
            .where(Host.id == on.id)
            .values(
                cpu=512, memory=8 * TIB, disk=128 * TIB, price_cpu_hour=prices[0],
                price_memory_gib_hour=prices[1], price_disk_gib_hour=prices[2],
            )
        )  # fmt: skip
        db.commit()
        return on.id


def test_a_host_where_the_vm_would_cost_too_much_does_not_fit(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    # The largest VM at the highest unit prices: 1000 x (256 + 4096 + 65536) tokens per
    # hour, past any 64-bit amount within a day; no host may take it.
    _big_host(backend, (MAX_PRICE, MAX_PRICE, MAX_PRICE))
    resp = backend.post(
        "/v1/vms", headers=developer.headers,
        json=_vm(ssh_keypair[1], cpu=256, memory="4t", disk="64t"),
    )  # fmt: skip
    assert resp.status_code == 409, resp.text
    assert "the most one VM may cost here" in resp.json()["detail"]
    assert "1000 UNIT/h" in resp.json()["detail"]


class FakeAgent:
    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        return SimpleNamespace(
            vm_id="agent-" + idempotency_key,
            ssh_port=2222,
            status="Running",
            host_key=None,
            disk_used_bytes=None,
        )


def test_the_largest_charge_and_a_deposit_past_int64_are_exact(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    # Unit prices at which the largest VM costs just under the most a VM may cost per hour.
    prices = (MAX_PRICE // (3 * 256), MAX_PRICE // (3 * 4096), MAX_PRICE // (3 * 65536))
    host_id = _big_host(backend, prices)
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    deposit = 2**70  # a chain transfer no 64-bit column holds
    with db_.session() as db:
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, developer.id), deposit, "x")
        db.commit()
    created = backend.post(
        "/v1/vms", headers=developer.headers,
        json=_vm(ssh_keypair[1], cpu=256, memory="4t", disk="64t", maxPricePerHour="1000"),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    vm_id = created.json()["id"]
    rate = hourly_price(256, 4 * TIB, 64 * TIB, *prices)
    assert MAX_PRICE * 0.999 < rate <= MAX_PRICE
    with db_.session() as db:
        # Unmetered for 91 days (a backend that was down): one charge of ~2.2e18 planck.
        db.execute(
            update(VM).where(VM.id == vm_id).values(metered_until=utcnow() - timedelta(days=91))
        )
        db.commit()
    report: Any = backend.app.state.jobs.run_now("meter").value  # type: ignore[attr-defined]
    assert report.skipped == 0 and report.stopped_for_funds == 0
    assert report.charged == pytest.approx(rate * 91 * 24, rel=1e-6)
    with db_.session() as db:
        owner = db.scalar(select(Host.account_id).where(Host.id == host_id))
        spent = (
            10 * UNIT
            + deposit
            - sum(ledger.balance(db, t, developer.id) for t in (ledger.DEVELOPER, ledger.PROMO))
        )
        held = billing.held_by(db, developer.id)
        earned = ledger.balance(db, ledger.PROVIDER, owner) + ledger.balance(
            db, ledger.PROVIDER_PROMO, owner
        )
        fees = (
            ledger.balance(db, ledger.PLATFORM, None)
            + ledger.balance(db, ledger.PLATFORM_PROMO, None)
            + 10 * UNIT
        )  # the issuer's account started at minus the sign-up credit
        assert spent - held == report.charged == earned + fees  # exact, to the planck
        assert ledger.balance(db, ledger.DEVELOPER, developer.id) > INT64_MAX
        assert violations(db) == []
        legs = list(db.scalars(select(LedgerEntry.amount).where(LedgerEntry.vm_id == vm_id)))
        assert max(abs(a) for a in legs) > 2 * 10**18  # one posting, stored exactly


def test_settings_refuse_maxima_that_would_overflow() -> None:
    assert largest_charge(BackendSettings().max_vm_price_planck) < INT64_MAX // 10
    with pytest.raises(ValidationError, match="64-bit limit"):
        BackendSettings(max_vm_price_per_hour="100000")  # 1e17 planck x 720 h
    with pytest.raises(ValidationError, match="max_unit_price: amount too large"):
        BackendSettings(max_unit_price="10000000", token_decimals=18)
    with pytest.raises(ValidationError, match="default prices"):
        BackendSettings(max_unit_price="0.001")
