"""A provider sees their earnings split: withdrawable now (posted to their balance) and not
yet withdrawable (accruing on their hosts' running VMs, promotional earnings pending), on
the hosts page and the Earnings page."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account
from tests.backend.billing_fixtures import UNIT, account, host, vm
from tests.console.conftest import signup


def _shown(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]+)<', html)
    assert found, element_id
    return found.group(1)


def test_withdrawable_and_not_yet(server: TestClient) -> None:
    signup(server, "prov@example.com", role="provider")
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        prov = db.scalar(select(Account).where(Account.email == "prov@example.com"))
        assert prov is not None
        # Running for an hour at 0.042 per hour, nothing posted yet.
        vm(db, account(db, "developer"), host(db, prov), utcnow() - timedelta(hours=1))
        db.commit()
    hosts = server.get("/console/provider/hosts").text
    assert _shown(hosts, "earnings-withdrawable") == "0 UNIT"
    accruing = _shown(hosts, "earnings-accruing")
    assert re.fullmatch(r"0\.03[0-9]+ UNIT", accruing), accruing  # 0.042 less the fee
    page = server.get("/console/billing").text
    assert _shown(page, "balance") == "0 UNIT" and _shown(page, "accruing").startswith("0.03")

    # Stopped: posted to the ledger, withdrawable; only the disk accrues from then on.
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.scalars(select(VM)).one()
        ledger.transfer(
            db, (ledger.CHAIN, None), (ledger.DEVELOPER, row.account_id), UNIT, "deposit"
        )
        billing.settle(db, row, billing.Terms(fee_bps=1000, window=600), to_state="stopped")
        db.commit()
    page = server.get("/console/billing").text
    posted = Decimal(_shown(page, "balance").removesuffix(" UNIT"))
    # What accrued then, plus the seconds between the two page views.
    assert 0 <= posted - Decimal(accruing.removesuffix(" UNIT")) < Decimal("0.0001")
    assert Decimal(_shown(page, "accruing").removesuffix(" UNIT")) < Decimal("0.000001")
