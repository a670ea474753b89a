"""The developer's billing page says what they can spend, how much of it is promotional
credit and how much their VMs hold; the provider's says what is withdrawable and what was
paid with promotional credit: pending, and paid by the platform from its promo budget."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend import ledger
from kumulus.backend.db import Database
from kumulus.backend.models import Account
from kumulus.backend.promo_payouts import Budget, pay_promo_earnings
from kumulus.config import BackendSettings
from kumulus.server import create_server
from tests.backend.billing_fixtures import UNIT, account
from tests.console.conftest import signup


def _text(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]+)<', html)
    assert found, html[:2000]
    return found.group(1)


def test_developer_sees_balance_credit_and_holds(server: TestClient) -> None:
    signup(server, "dev@example.com")
    page = server.get("/console/billing")
    assert page.status_code == 200
    assert _text(page.text, "balance") == "10 UNIT"
    assert _text(page.text, "promo") == "10 UNIT"  # the sign-up credit is promotional
    assert _text(page.text, "held") == "0 UNIT"


def test_provider_sees_withdrawable_and_promotional_earnings(server: TestClient) -> None:
    signup(server, "prov@example.com", role="provider")
    page = server.get("/console/billing")
    assert page.status_code == 200
    assert _text(page.text, "balance") == "0 UNIT"
    assert _text(page.text, "promo") == "0 UNIT"
    assert _text(page.text, "promo-paid") == "0 UNIT"
    assert "never pays it out" in page.text  # no promo budget by default


def test_provider_sees_promo_earnings_pending_and_paid(tmp_path: Path) -> None:
    settings = BackendSettings(
        data_dir=tmp_path / "backend", promo_budget="100", promo_payout_daily_cap="2"
    )
    with TestClient(create_server(settings), base_url="http://127.0.0.1") as server:
        signup(server, "prov@example.com", role="provider")
        db: Database = server.app.state.db  # type: ignore[attr-defined]
        with db.session() as s:
            prov = s.scalars(select(Account).where(Account.email == "prov@example.com")).one()
            payer = account(s, "developer")
            ledger.transfer(
                s, (ledger.CHAIN, None), (ledger.DEVELOPER, payer.id), 9 * UNIT, "deposit"
            )
            ledger.transfer(
                s, (ledger.DEVELOPER, payer.id), (ledger.PLATFORM, None), 9 * UNIT, "fee"
            )
            ledger.transfer(
                s,
                (ledger.PLATFORM_PROMO, None),
                (ledger.PROVIDER_PROMO, prov.id),
                5 * UNIT,
                "usage",
            )
            s.commit()
        # (The promo-payouts job of this server may get there first: same outcome.)
        pay_promo_earnings(db, Budget.of(settings))
        page = server.get("/console/billing").text
        assert _text(page, "balance") == "2 UNIT"  # withdrawable now
        assert _text(page, "promo") == "3 UNIT"  # still pending
        assert _text(page, "promo-paid") == "2 UNIT"
        assert _text(page, "promo-cap") == "2 UNIT"
        token = server.post(
            "/v1/auth/login",
            json={"email": "prov@example.com", "password": "correct horse battery"},
        ).json()["token"]
        api = server.get("/v1/billing", headers={"Authorization": f"Bearer {token}"}).json()
        assert (api["promo"], api["promoPaid"], api["promoDailyCap"]) == (
            "3 UNIT",
            "2 UNIT",
            "2 UNIT",
        )
