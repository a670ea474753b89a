"""ATTACK: migration 0010 reclassifies the sign-up *credit* as promotional money but leaves
the *usage it paid for* as deposit-funded money. On a database upgraded from 0009:

- every provider earning that was paid with sign-up credit (or with no money at all: the
  issue's -38,428 UNIT collusion) stays in the withdrawable `provider` account, so
  `request_payout` pays it out on chain although no developer ever deposited it;
- the developer who spent their sign-up credit gets it back whole as `promo` (spendable
  again) while their `developer` account is left below zero;
- `ledger_check.violations` reports nothing (the cash class still sums to zero), so the
  payout circuit breaker never trips.

The scenario is the one measured in issue 11 (a developer with 10 UNIT of credit running a
VM on a colluding host priced at the maximum), written as the 0009 backend wrote it."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from kumulus.backend import ledger
from kumulus.backend.db import Database, alembic_config
from kumulus.backend.ledger_check import violations
from kumulus.backend.payouts import PayoutError, request_payout
from tests.backend.billing_fixtures import UNIT

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _legacy_ledger(url: str) -> None:
    """The rows a 0009 backend left: sign-up credit, then usage the credit (and more) paid."""
    db = Database(url)
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
    with db.engine.begin() as conn:
        for id_, role in ((1, "developer"), (2, "provider")):
            conn.execute(
                text(
                    "INSERT INTO accounts (id, email, password_hash, role, created_at)"
                    " VALUES (:id, :email, 'x', :role, :now)"
                ),
                {"id": id_, "email": f"{role}@example.com", "role": role, "now": NOW},
            )
        rows = [
            # sign-up credit, as billing.grant wrote it in 0009
            ("t1", "platform", None, -10 * UNIT, "credit"),
            ("t1", "developer", 1, 10 * UNIT, "credit"),
            # one maintenance pass of the colluding VM (issue 11's numbers)
            ("t2", "developer", 1, -38_438 * UNIT, "usage"),
            ("t2", "provider", 2, 34_594 * UNIT, "usage"),
            ("t2", "platform", None, 3_844 * UNIT, "fee"),
        ]
        for txn, account_type, account_id, amount, kind in rows:
            conn.execute(
                text(
                    "INSERT INTO ledger_entries (txn_id, account_type, account_id, amount, kind,"
                    " vm_id, memo, created_at) VALUES (:t, :a, :i, :m, :k, NULL, '', :now)"
                ),
                {"t": txn, "a": account_type, "i": account_id, "m": amount, "k": kind, "now": NOW},
            )
    db.engine.dispose()


def test_migrated_promo_funded_earnings_cannot_be_withdrawn(database_url: str) -> None:
    _legacy_ledger(database_url)
    db = Database(database_url)
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    try:
        with db.session() as s:
            provider = ledger.balance(s, ledger.PROVIDER, 2)
            developer = ledger.balance(s, ledger.DEVELOPER, 1)
            promo = ledger.balance(s, ledger.PROMO, 1)
            problems = violations(s)
            paid = None
            with contextlib.suppress(PayoutError):  # refused: what the test wants
                paid = request_payout(s, 2, "5Grw", 34_594 * UNIT, 0).amount
        facts = {
            "withdrawable provider earnings": provider,
            "developer cash balance": developer,
            "developer promo (spent credit given back)": promo,
            "ledger_check.violations": problems,
            "payout granted": paid,
        }
        # No developer deposited anything: nothing may be withdrawable, and it was paid out.
        assert paid is None and provider == 0, facts
    finally:
        db.engine.dispose()


def test_migration_does_not_hand_spent_credit_back(database_url: str) -> None:
    _legacy_ledger(database_url)
    db = Database(database_url)
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    try:
        with db.session() as s:
            promo = ledger.balance(s, ledger.PROMO, 1)
            problems = violations(s)
        # The 10 UNIT of credit were spent before the upgrade; they must not be spendable again,
        # and a developer below zero is a broken invariant the check must report.
        assert promo == 0 or problems, (promo, problems)
    finally:
        db.engine.dispose()
