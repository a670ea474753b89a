"""GET /metrics answers callers on this machine only (the connection's address, not a
header), in the Prometheus text format, with the settlement and promo figures every
backend process shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from kumulus.backend import ledger
from kumulus.backend import settlement_state as state
from kumulus.backend.app import create_app
from kumulus.backend.db import Database
from kumulus.backend.promo_payouts import Budget, pay_promo_earnings
from kumulus.config import BackendSettings
from tests.backend.billing_fixtures import UNIT, account


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    backend_app = create_app(BackendSettings(data_dir=tmp_path / "backend"))
    yield backend_app
    backend_app.state.db.engine.dispose()


SETTLEMENT = (
    "kumulus_payouts_breaker_tripped",
    "kumulus_ledger_violations",
    "kumulus_settlement_chain_mismatch",
    "kumulus_promo_paid_planck_total",
)


def scrape(app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 40000)) -> dict[str, float]:
    resp = TestClient(app, client=client).get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
    }


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.0.0.2", "testclient"])
def test_other_machines_get_403(app: FastAPI, peer: str) -> None:
    resp = TestClient(app, client=(peer, 40000)).get(
        "/metrics", headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
    )
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    assert "kumulus_" not in resp.text


def test_loopback_callers_get_the_shared_figures(app: FastAPI) -> None:
    db: Database = app.state.db
    first = scrape(app, ("::1", 40000))
    assert {name: first[name] for name in SETTLEMENT} == dict.fromkeys(SETTLEMENT, 0)
    state.raise_condition(db, state.BLOCKED_CHAIN, "the chain has another genesis")
    with db.session() as s:  # 4 UNIT of real fees, 3 UNIT of promo earnings
        prov, payer = account(s, "provider"), account(s, "developer")
        ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, payer.id), 4 * UNIT, "deposit")
        ledger.transfer(s, (ledger.DEVELOPER, payer.id), (ledger.PLATFORM, None), 4 * UNIT, "fee")
        ledger.transfer(
            s, (ledger.PLATFORM_PROMO, None), (ledger.PROVIDER_PROMO, prov.id), 3 * UNIT, "usage"
        )
        s.commit()
    assert pay_promo_earnings(db, Budget(10 * UNIT, 2 * UNIT)) == 2 * UNIT
    figures = scrape(app)
    assert figures["kumulus_settlement_chain_mismatch"] == 1
    assert figures["kumulus_promo_paid_planck_total"] == 2 * UNIT
    assert figures["kumulus_ledger_violations"] == 0  # checked before paying: none
    assert figures["kumulus_payouts_breaker_tripped"] == 0
    state.clear_condition(db, state.BLOCKED_CHAIN)
    assert scrape(app)["kumulus_settlement_chain_mismatch"] == 0


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first = create_app(BackendSettings(data_dir=tmp_path / "one"))
    second = create_app(BackendSettings(data_dir=tmp_path / "two"))
    try:
        assert first.state.metrics is not second.state.metrics
        state.raise_condition(first.state.db, state.BLOCKED_CHAIN, "another genesis")
        assert scrape(first)["kumulus_settlement_chain_mismatch"] == 1
        assert scrape(second)["kumulus_settlement_chain_mismatch"] == 0
    finally:
        first.state.db.engine.dispose()
        second.state.db.engine.dispose()
