"""Balance, spend or earnings rate, and ledger entries of the calling account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from kumulus.backend import billing
from kumulus.backend.clock import aware
from kumulus.backend.deps import CurrentAccount, Db, Settings
from kumulus.backend.models import Host, LedgerEntry, Vm
from kumulus.backend.schemas import BillingOut, LedgerEntryOut
from kumulus.core.money import format_amount

router = APIRouter(prefix="/v1", tags=["billing"])


@router.get("/billing", response_model=BillingOut)
def get_billing(
    account: CurrentAccount,
    request: Request,
    db: Db,
    settings: Settings,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BillingOut:
    def money(planck: int) -> str:
        return format_amount(planck, settings.token_decimals, settings.token_symbol)

    kind = billing.DEVELOPER if account.role == "developer" else billing.PROVIDER
    bal = billing.balance(db, kind, account.id)
    if kind == billing.DEVELOPER:
        per_hour = billing.spend_per_hour(db, account.id)
    else:
        vms = db.scalars(
            select(Vm)
            .join(Host, Host.id == Vm.host_id)
            .where(Host.account_id == account.id, Vm.metered_until.is_not(None))
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
    entries = db.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.account_type == kind, LedgerEntry.account_id == account.id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    return BillingOut(
        balance=money(bal),
        balance_planck=bal,
        per_hour=money(per_hour),
        hours_left=hours_left,
        warning=warning,
        settlement="on" if getattr(request.app.state, "chain", None) else "off",
        entries=[
            LedgerEntryOut(
                txn_id=e.txn_id,
                amount=money(e.amount) if e.amount >= 0 else "-" + money(-e.amount),
                kind=e.kind,
                vm_id=e.vm_id,
                memo=e.memo,
                created_at=aware(e.created_at),
            )
            for e in entries
        ],
    )
