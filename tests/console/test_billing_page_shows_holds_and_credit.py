"""The developer's billing page says what they can spend, how much of it is promotional
credit and how much their VMs hold; the provider's says what is withdrawable and what was
paid with promotional credit (never withdrawable)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

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
    assert "never withdrawable" in page.text
