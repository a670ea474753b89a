"""The quote is the price charged: POST /v1/vms/quote names the price on the host the
scheduler would choose, and the VM created with that quote's maxPricePerHour lands there and
pays exactly that; a create whose placement would cost more than its maxPricePerHour is a
409 that says the current price."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import vms
from kumulus.core.money import format_amount, hourly_price
from tests.backend.conftest import Actor
from tests.backend.price_fixtures import GIB, UNIT, priced_host


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


SHAPE = {"cpu": 1.5, "memory": "3g", "disk": "25g"}


def test_the_vm_pays_exactly_the_quoted_price(
    backend: TestClient,
    developer: Actor,
    ssh_keypair: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        # The cheapest host for this VM sits in a lower tier: the quote is not "the cheapest
        # host" but the one placement takes, in the best tier.
        priced_host(db, (UNIT // 1000, UNIT // 1000, UNIT // 10**6), tier=3)
        chosen_prices = (UNIT // 100 + 3, UNIT // 200 + 7, UNIT // 10_000 + 11)
        chosen = priced_host(db, chosen_prices, tier=8)
    quoted = backend.post("/v1/vms/quote", headers=developer.headers, json=SHAPE)
    assert quoted.status_code == 200, quoted.text
    q = quoted.json()
    price = hourly_price(1.5, 3 * GIB, 25 * GIB, *chosen_prices)
    assert q["hostId"] == chosen
    assert q["pricePerHour"] == format_amount(price, 12)
    assert q["maxPricePerHour"] == format_amount(-(-price * 11 // 10), 12)  # +10%
    created = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={
            **SHAPE,
            "username": "alice",
            "sshKey": ssh_keypair[1],
            "maxPricePerHour": q["maxPricePerHour"],
        },
    )
    assert created.status_code == 201, created.text
    vm = created.json()
    assert vm["hostId"] == chosen
    assert vm["pricePerHour"] == f"{q['pricePerHour']} {q['symbol']}"


def test_a_create_under_the_current_price_is_409_with_that_price(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        priced_host(db, (UNIT // 100, UNIT // 200, UNIT // 10_000))
    q = backend.post("/v1/vms/quote", headers=developer.headers, json=SHAPE).json()
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={**SHAPE, "username": "alice", "sshKey": ssh_keypair[1], "maxPricePerHour": "0.01"},
    )
    assert resp.status_code == 409, resp.text
    detail = resp.json()["detail"]
    assert f"the current price of this VM is {q['pricePerHour']} UNIT/h" in detail
    assert "maxPricePerHour" in detail
    # The quote says the same when asked with that maximum.
    again = backend.post(
        "/v1/vms/quote", headers=developer.headers, json={**SHAPE, "maxPricePerHour": "0.01"}
    )
    assert again.status_code == 409 and again.json()["code"] == "no_host_fits"


def test_nothing_online_is_a_409_quote(backend: TestClient, developer: Actor) -> None:
    resp = backend.post("/v1/vms/quote", headers=developer.headers, json=SHAPE)
    assert resp.status_code == 409
    assert "no host is online" in resp.json()["detail"]
