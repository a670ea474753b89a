"""Developers' wallets and deposits, providers' payouts (see backend/wallets.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from kumulus.backend import wallets
from kumulus.backend.deps import CurrentDeveloper, CurrentProvider, Db, Settings
from kumulus.backend.paging import After, Limit
from kumulus.backend.schemas import (
    DepositInfo,
    PayoutIn,
    PayoutOut,
    WalletChallengeOut,
    WalletLinkIn,
    WalletOut,
)
from kumulus.backend.wallet_links import new_challenge
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["billing"], route_class=AuthFirstRoute)


def _deposit_address(request: Request) -> str | None:
    if getattr(request.app.state, "chain", None) is None:
        return None
    return str(request.app.state.deposit_address)  # its own address, never the payout key


@router.post(
    "/wallet/challenge", response_model=WalletChallengeOut, status_code=status.HTTP_201_CREATED
)
def developer_wallet_challenge(
    account: CurrentDeveloper, db: Db, settings: Settings
) -> WalletChallengeOut:
    return new_challenge(db, account, settings.challenge_ttl, " for deposits")


@router.post(
    "/wallet/link",
    response_model=WalletOut,
    status_code=status.HTTP_201_CREATED,
    responses=refusals(404, 409),
)
def developer_wallet_link(
    body: WalletLinkIn, account: CurrentDeveloper, db: Db, settings: Settings
) -> WalletOut:
    return WalletOut(address=wallets.link_developer_wallet(db, settings, account, body))


@router.get("/wallets", response_model=Page[WalletOut])
def developer_wallets(
    account: CurrentDeveloper, db: Db, limit: Limit = 50, after: After = None
) -> Page[WalletOut]:
    rows, next_cursor = wallets.wallets_page(db, account, limit, after)
    return Page(items=[WalletOut(address=r.address) for r in rows], next=next_cursor)


@router.get("/billing/deposit-info", response_model=DepositInfo, responses=refusals(409))
def deposit_info(account: CurrentDeveloper, request: Request, settings: Settings) -> DepositInfo:
    return wallets.deposit_info(settings, _deposit_address(request))


@router.post(
    "/provider/payouts",
    response_model=PayoutOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=refusals(409),
)
def create_payout(
    body: PayoutIn, account: CurrentProvider, request: Request, db: Db, settings: Settings
) -> PayoutOut:
    """Pay earnings to the linked wallet (all of them unless `amount` is given); the
    payouts job sends it within its interval."""
    settlement_on = _deposit_address(request) is not None
    payout = wallets.request_provider_payout(db, settings, account, body.amount, settlement_on)
    return wallets.payout_out(settings, payout)


@router.get("/provider/payouts", response_model=Page[PayoutOut])
def list_payouts(
    account: CurrentProvider, db: Db, settings: Settings, limit: Limit = 50, after: After = None
) -> Page[PayoutOut]:
    rows, next_cursor = wallets.payouts_page(db, account, limit, after)
    return Page(items=[wallets.payout_out(settings, p) for p in rows], next=next_cursor)
