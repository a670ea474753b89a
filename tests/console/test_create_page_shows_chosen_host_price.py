"""The console's create page shows the price of the host the scheduler would choose (not
the cheapest host anywhere), and the create posts back, as maxPricePerHour, that price plus
the tolerance unless the developer typed a maximum."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend import vms
from kumulus.backend.models import VM
from kumulus.core.money import format_amount, hourly_price
from tests.backend.price_fixtures import GIB, UNIT, priced_host
from tests.console.conftest import signup

CHEAPEST = (UNIT // 1000, UNIT // 1000, UNIT // 10**6)  # in a low tier
CHOSEN = (UNIT // 100, UNIT // 200, UNIT // 10_000)  # in the best tier
FORM = {"preset": "custom", "cpu": "2", "memory": "4g", "disk": "40g", "name": "vm"}


class FakeAgent:
    def __init__(self, *_: Any) -> None:
        pass

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        return SimpleNamespace(
            vm_id="agent-" + idempotency_key, ssh_port=2222, status="Running", host_key=None
        )


def _setup(server: TestClient, public_key: str) -> tuple[str, str]:
    csrf = signup(server, "dev@example.com")
    assert (
        server.post(
            "/console/keys", data={"csrf": csrf, "name": "laptop", "public_key": public_key}
        ).status_code
        == 200
    )
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        priced_host(db, CHEAPEST, tier=2)
        chosen = priced_host(db, CHOSEN, tier=9)
    return csrf, chosen


def test_the_quote_is_the_chosen_hosts_price_and_the_create_is_bounded_by_it(
    server: TestClient, ssh_keypair: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    csrf, chosen = _setup(server, ssh_keypair[1])
    price = hourly_price(2, 4 * GIB, 40 * GIB, *CHOSEN)
    cheapest = hourly_price(2, 4 * GIB, 40 * GIB, *CHEAPEST)
    most = format_amount(-(-price * 11 // 10), 12)
    fragment = server.post("/console/vms/quote", data={"csrf": csrf, **FORM})
    assert fragment.status_code == 200
    assert f'<strong id="quote-price">{format_amount(price, 12)} UNIT</strong>' in fragment.text
    assert format_amount(cheapest, 12) not in fragment.text
    assert f"at most {most} UNIT" in fragment.text
    quoted_max = re.search(r'name="quoted_max" value="([^"]+)"', fragment.text)
    assert quoted_max and quoted_max.group(1) == most

    key_id = re.search(
        r'name="ssh_key_id"[^>]*>\s*<option value="(\d+)"', server.get("/console/vms/new").text
    )
    assert key_id, "the create page lists the key"
    form = {"csrf": csrf, **FORM, "username": "alice", "ssh_key_id": key_id.group(1)}
    created = server.post("/console/vms", data={**form, "quoted_max": most}, follow_redirects=False)
    assert created.status_code == 303, created.text
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        vm = db.scalars(select(VM)).one()
        assert vm.host_id == chosen
        assert vm.max_price_hour == -(-price * 11 // 10)
        assert hourly_price(
            vm.cpu, vm.memory, vm.disk,
            vm.price_cpu_hour, vm.price_memory_gib_hour, vm.price_disk_gib_hour,
        ) == price  # fmt: skip


def test_a_typed_maximum_wins_and_under_the_price_is_refused_with_it(
    server: TestClient, ssh_keypair: tuple[Path, str]
) -> None:
    csrf, _ = _setup(server, ssh_keypair[1])
    price = format_amount(hourly_price(2, 4 * GIB, 40 * GIB, *CHOSEN), 12)
    page = server.get("/console/vms/new")
    assert "default: the price shown plus 10%" in page.text
    key_id = re.search(r'<option value="(\d+)"', page.text)
    assert key_id
    form = {"csrf": csrf, **FORM, "username": "alice", "ssh_key_id": key_id.group(1)}
    refused = server.post("/console/vms", data={**form, "max_price": "0.001", "quoted_max": "9"})
    assert refused.status_code == 409
    assert f"the current price of this VM is {price} UNIT/h" in refused.text
