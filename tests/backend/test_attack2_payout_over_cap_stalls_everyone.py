"""Attack: one provider's payout larger than the daily cap stalls every provider's payouts.

`PayoutWorker.run_once` sends pending payouts in order and stops at the first one that does
not fit under the daily cap ("a payout that waits is not overtaken by later ones"). A
payout whose amount alone exceeds the cap can never fit, however long it waits, and
nothing refuses it at request time (`request_payout`, and `schedule_payouts`, which
requests "everything earned"). One provider with more earned than the cap (or the
scheduled payout of any provider who did) therefore blocks all payouts, for everyone,
forever."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Payout
from kumulus.backend.payouts import PayoutError, PayoutWorker, request_payout
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings
from tests.backend.fake_chain import FakeChain


def _provider(db: Database, earned: int) -> int:
    with db.session() as s:
        prov = account(s, "provider")
        earnings(s, prov.id, earned)
        s.commit()
        return prov.id


def test_a_payout_over_the_cap_does_not_block_everyone(backend: TestClient) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    chain, key = FakeChain(), keypair_from_mnemonic(new_mnemonic())
    chain.balances[key.ss58_address] = 1000 * UNIT
    attacker = _provider(db, 50 * UNIT)
    honest = _provider(db, 3 * UNIT)
    # Refusing it at request time is one acceptable fix.
    with db.session() as s, contextlib.suppress(PayoutError):
        request_payout(s, attacker, "5Attacker", 20 * UNIT, minimum=1)  # the cap is 10
    with db.session() as s:
        request_payout(s, honest, "5Honest", 2 * UNIT, minimum=1)
    worker = PayoutWorker(db, chain.client(), key, daily_cap=10 * UNIT)
    worker.run_once()
    # Even days later (nothing else was paid meanwhile) the honest payout would still wait.
    with db.session() as s:
        s.execute(update(Payout).values(created_at=utcnow() - timedelta(days=3)))
        s.commit()
    worker.run_once()
    worker.run_once()
    sent_to = [dest for _, dest, _ in chain.sent]
    assert "5Honest" in sent_to, f"honest provider never paid; sent: {chain.sent}"
