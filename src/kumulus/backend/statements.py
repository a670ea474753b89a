"""What an account sees of its money: balance, spend or earnings rate, runway, warning,
and its ledger entries (newest first)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import billing, paging
from kumulus.backend.models import VM, Account, Host, LedgerEntry
from kumulus.backend.schemas import BillingOut, LedgerEntryOut
from kumulus.config import BackendSettings
from kumulus.core.money import format_amount


def ledger_kind(account: Account) -> str:
    return billing.DEVELOPER if account.role == "developer" else billing.PROVIDER


def _money(settings: BackendSettings, planck: int) -> str:
    text = format_amount(abs(planck), settings.token_decimals, settings.token_symbol)
    return "-" + text if planck < 0 else text


def entry_out(settings: BackendSettings, e: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        id=e.id,
        txn_id=e.txn_id,
        amount=_money(settings, e.amount),
        kind=e.kind,
        vm_id=e.vm_id,
        memo=e.memo,
        created_at=e.created_at,
    )


def entries_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[LedgerEntry], str | None]:
    stmt = select(LedgerEntry).where(
        LedgerEntry.account_type == ledger_kind(account), LedgerEntry.account_id == account.id
    )
    return paging.page(db, stmt, [LedgerEntry.id], limit, after, descending=True)


def statement(
    db: Session, settings: BackendSettings, account: Account, settlement_on: bool, entries: int
) -> BillingOut:
    """The account's balance and rate with its `entries` newest ledger entries."""
    kind = ledger_kind(account)
    bal = billing.balance(db, kind, account.id)
    if kind == billing.DEVELOPER:
        per_hour = billing.spend_per_hour(db, account.id)
    else:
        vms = db.scalars(
            select(VM)
            .join(Host, Host.id == VM.host_id)
            .where(Host.account_id == account.id, VM.metered_until.is_not(None))
        )
        per_hour = sum(
            billing.split_fee(billing.rate_of(vm), settings.platform_fee_bps)[0] for vm in vms
        )
    hours_left = None
    warning = None
    if kind == billing.DEVELOPER:
        hours_left = round(bal / per_hour, 2) if per_hour else None
        if bal <= 0:
            warning = "Your balance is used up: running VMs are stopped. Deposit to continue."
        elif hours_left is not None and hours_left < settings.low_balance_hours:
            warning = (
                f"About {hours_left:g} h of balance left at the current spend; "
                "VMs are stopped (not deleted) when it runs out."
            )
    rows, _ = entries_page(db, account, entries, None)
    return BillingOut(
        balance=_money(settings, bal),
        balance_planck=bal,
        per_hour=_money(settings, per_hour),
        hours_left=hours_left,
        warning=warning,
        settlement="on" if settlement_on else "off",
        entries=[entry_out(settings, e) for e in rows],
    )
