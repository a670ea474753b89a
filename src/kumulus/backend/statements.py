"""What an account sees of its money: balance, spend or earnings rate, runway, warning,
and its ledger entries (newest first)."""

from __future__ import annotations

from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import billing, ledger, paging, promo_payouts, vm_costs
from kumulus.backend.models import VM, Account, Host, LedgerEntry
from kumulus.backend.schemas import BillingOut, LedgerEntryOut
from kumulus.config import BackendSettings
from kumulus.core.money import format_amount


def ledger_kinds(account: Account) -> tuple[str, ...]:
    """The ledger accounts an account's statement shows."""
    if account.role == "developer":
        return (ledger.DEVELOPER, ledger.PROMO, ledger.HOLD, ledger.HOLD_PROMO)
    return (ledger.PROVIDER, ledger.PROVIDER_PROMO)


def _money(settings: BackendSettings, planck: int) -> str:
    text = format_amount(abs(planck), settings.token_decimals, settings.token_symbol)
    return "-" + text if planck < 0 else text


def entry_out(settings: BackendSettings, e: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        id=e.id,
        txn_id=e.txn_id,
        amount=_money(settings, e.amount),
        kind=e.kind,
        account=e.account_type,
        vm_id=e.vm_id,
        memo=e.memo,
        created_at=e.created_at,
    )


def _stopped_for_funds(db: Session, account_id: int) -> int:
    return len(
        db.scalars(
            select(VM.id).where(
                VM.account_id == account_id,
                VM.intended_state == "stopped",
                VM.failure_reason == billing.STOPPED_FOR_FUNDS,
            )
        ).all()
    )


def entries_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[LedgerEntry], str | None]:
    stmt = select(LedgerEntry).where(
        LedgerEntry.account_type.in_(ledger_kinds(account)), LedgerEntry.account_id == account.id
    )
    return paging.page(db, stmt, [LedgerEntry.id], limit, after, descending=True)


def statement(
    db: Session, settings: BackendSettings, account: Account, settlement_on: bool, entries: int
) -> BillingOut:
    """The account's balance and rate with its `entries` newest ledger entries.

    Developers: `balance` is what they can spend (deposits and promotional credit not yet
    set aside), `held` what their VMs' prepaid holds keep. Providers: `balance` is what
    they can withdraw; `promo` what they earned from promotional credit and is still
    pending (not withdrawable), `promo_paid` how much of it the platform paid from its fees
    (backend/promo_payouts.py), `accruing` their share of what their hosts' VMs were
    charged since it was last posted (withdrawable or promotional once posted)."""
    developer = account.role == "developer"
    accruing = 0
    if developer:
        cash = ledger.balance(db, ledger.DEVELOPER, account.id)
        promo = ledger.balance(db, ledger.PROMO, account.id)
        held = billing.held_by(db, account.id)
        bal = cash + promo
        per_hour = billing.spend_per_hour(db, account.id)
        promo_paid = 0
    else:
        bal = ledger.balance(db, ledger.PROVIDER, account.id)
        promo = ledger.balance(db, ledger.PROVIDER_PROMO, account.id)
        held = 0
        promo_paid = promo_payouts.paid_to(db, account.id)
        vms = list(
            db.scalars(
                select(VM)
                .join(Host, Host.id == VM.host_id)
                .where(Host.account_id == account.id, VM.metered_until.is_not(None))
            )
        )
        share = partial(billing.split_fee, fee_bps=settings.platform_fee_bps)
        per_hour = sum(share(billing.rate_of(vm))[0] for vm in vms)
        # Charged to the VMs' holds, not posted yet: earned, withdrawable only once posted.
        accruing = sum(share(vm_costs.cost_so_far(vm, 0, False))[0] for vm in vms)
    hours_left = None
    warning = None
    if developer:
        hours_left = round((bal + held) / per_hour, 2) if per_hour else None
        if bal <= 0 and per_hour:
            warning = (
                "Your balance is used up: running VMs are stopped when their prepaid hold "
                "runs out, and stopped VMs whose disk cannot be paid are deleted after "
                f"{settings.unfunded_grace / 86400:g} days. Deposit to continue."
            )
        elif stopped_for_funds := _stopped_for_funds(db, account.id):
            warning = (
                f"{stopped_for_funds} VM(s) stopped: your balance could not renew their "
                "prepaid hold. Deposit, then start them again."
            )
        elif hours_left is not None and hours_left < settings.low_balance_hours:
            warning = (
                f"About {hours_left:g} h of balance left at the current spend; "
                "VMs are stopped (not deleted) when it runs out."
            )
    rows, _ = entries_page(db, account, entries, None)
    return BillingOut(
        balance=_money(settings, bal),
        balance_planck=bal,
        held=_money(settings, held),
        promo=_money(settings, promo),
        promo_paid=_money(settings, promo_paid),
        promo_daily_cap=_money(
            settings,
            0
            if developer or not promo_payouts.Budget.of(settings).enabled
            else settings.promo_payout_daily_cap_planck,
        ),
        per_hour=_money(settings, per_hour),
        accruing=_money(settings, accruing),
        hours_left=hours_left,
        warning=warning,
        settlement="on" if settlement_on else "off",
        entries=[entry_out(settings, e) for e in rows],
    )
