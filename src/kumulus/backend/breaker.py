"""The payout circuit breaker: no payout leaves while the ledger check fails.

Before every payout send (and before promotional earnings are paid from the platform's
fees, backend/promo_payouts.py), `payouts_allowed` runs `ledger_check.violations`. Any
violation stops ALL payouts, loudly: an error in the log (once, when it trips or its
reasons change), the `blocked:breaker` settlement state (in /healthz as `circuit_breaker`,
with reasons in `kumulus backend settlement`), the `kumulus_payouts_breaker_tripped` and
`kumulus_ledger_violations` metrics (backend/metrics.py) and a banner on the providers'
billing page. It resets by itself once the check passes again (after an operator fixed
what was wrong); payouts that waited are then sent. The check is the ledger's own
(backend/ledger_check.py), so this module only holds the breaker's state."""

from __future__ import annotations

from kumulus.backend import ledger_check
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database


def payouts_allowed(db: Database) -> bool:
    """Run the ledger check; False (and the breaker tripped) when anything is wrong. The
    number of violations found is recorded (`check:ledger`) for the metrics."""
    with db.session() as s:
        problems = ledger_check.violations(s)
        count = str(len(problems))
        if state.get(s, state.LEDGER_VIOLATIONS) != count:  # a write only when it changes
            state.put(s, state.LEDGER_VIOLATIONS, count)
            s.commit()
    if problems:
        state.raise_condition(
            db,
            state.BLOCKED_BREAKER,
            "circuit breaker tripped, ALL payouts stopped: " + "; ".join(problems),
        )
        return False
    state.clear_condition(db, state.BLOCKED_BREAKER)
    return True


def tripped(db: Database) -> bool:
    return state.is_blocked(db, state.BLOCKED_BREAKER)
