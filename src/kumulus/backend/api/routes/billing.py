"""Balance, spend or earnings rate, and ledger entries of the calling account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from kumulus.backend import statements
from kumulus.backend.deps import CurrentAccount, Db, Settings
from kumulus.backend.paging import After, Limit
from kumulus.backend.schemas import BillingOut, LedgerEntryOut
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["billing"], route_class=AuthFirstRoute)


@router.get("/billing", response_model=BillingOut)
def get_billing(
    account: CurrentAccount,
    request: Request,
    db: Db,
    settings: Settings,
    limit: Annotated[int, Query(ge=1, le=200, description="newest ledger entries shown")] = 100,
) -> BillingOut:
    """Balance and rate with the newest entries; all entries: /v1/billing/entries."""
    settlement_on = getattr(request.app.state, "chain", None) is not None
    return statements.statement(db, settings, account, settlement_on, limit)


@router.get("/billing/entries", response_model=Page[LedgerEntryOut])
def ledger_entries(
    account: CurrentAccount, db: Db, settings: Settings, limit: Limit = 50, after: After = None
) -> Page[LedgerEntryOut]:
    """The account's ledger entries, newest first."""
    rows, next_cursor = statements.entries_page(db, account, limit, after)
    return Page(items=[statements.entry_out(settings, e) for e in rows], next=next_cursor)
