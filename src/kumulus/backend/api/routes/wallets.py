"""Developers' wallets (linked by signed challenge; their transfers to the deposit address
credit the balance), where to deposit, and providers' payouts."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from substrateinterface import Keypair

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.deps import CurrentDeveloper, CurrentProvider, Db, Settings
from kumulus.backend.hosts import to_planck
from kumulus.backend.models import DeveloperWallet, Payout, ProviderProfile
from kumulus.backend.payouts import PayoutError, request_payout
from kumulus.backend.schemas import (
    DepositInfo,
    PayoutIn,
    PayoutOut,
    WalletChallengeOut,
    WalletLinkIn,
    WalletOut,
)
from kumulus.backend.wallet_links import new_challenge, spend_challenge
from kumulus.core.money import format_amount
from kumulus.core.signing import public_key_of

router = APIRouter(prefix="/v1", tags=["billing"])

SETTLEMENT_OFF = (
    "on-chain settlement is off on this backend: start it with KUMULUS_BACKEND_CHAIN_URL set "
    "to a Substrate node (or run `kumulus up --chain-spec FILE` for a local chain)"
)


@router.post(
    "/wallet/challenge", response_model=WalletChallengeOut, status_code=status.HTTP_201_CREATED
)
def developer_wallet_challenge(
    account: CurrentDeveloper, db: Db, settings: Settings
) -> WalletChallengeOut:
    return new_challenge(db, account, settings.challenge_ttl, " for deposits")


@router.post("/wallet/link", response_model=WalletOut, status_code=status.HTTP_201_CREATED)
def developer_wallet_link(
    body: WalletLinkIn, account: CurrentDeveloper, db: Db, settings: Settings
) -> WalletOut:
    spend_challenge(db, account, body)
    # Stored in this chain's ss58 form: the deposit watcher looks senders up by it.
    address = Keypair(
        public_key=public_key_of(body.address), ss58_format=settings.ss58_format
    ).ss58_address
    db.add(DeveloperWallet(address=address, account_id=account.id, linked_at=utcnow()))
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "this wallet is linked already") from exc
    return WalletOut(address=address)


@router.get("/wallets", response_model=list[WalletOut])
def developer_wallets(account: CurrentDeveloper, db: Db) -> list[WalletOut]:
    rows = db.scalars(select(DeveloperWallet).where(DeveloperWallet.account_id == account.id))
    return [WalletOut(address=r.address) for r in rows]


@router.get("/billing/deposit-info", response_model=DepositInfo)
def deposit_info(account: CurrentDeveloper, request: Request, settings: Settings) -> DepositInfo:
    chain = getattr(request.app.state, "chain", None)
    if chain is None:
        raise HTTPException(status.HTTP_409_CONFLICT, SETTLEMENT_OFF)
    return DepositInfo(
        address=request.app.state.payout_key.ss58_address,
        chain_url=settings.chain_url or "",
        ss58_format=settings.ss58_format,
        token_decimals=settings.token_decimals,
        token_symbol=settings.token_symbol,
    )


def _payout_out(p: Payout, settings: Settings) -> PayoutOut:
    return PayoutOut(
        id=p.id,
        address=p.address,
        amount=format_amount(p.amount, settings.token_decimals, settings.token_symbol),
        status=p.status,
        extrinsic_hash=p.extrinsic_hash,
        block_number=p.block_number,
        error=p.error,
        created_at=aware(p.created_at),
    )


@router.post("/provider/payouts", response_model=PayoutOut, status_code=status.HTTP_202_ACCEPTED)
def create_payout(
    body: PayoutIn, account: CurrentProvider, request: Request, db: Db, settings: Settings
) -> PayoutOut:
    """Pay earnings to the linked wallet (all of them unless `amount` is given); the
    payout is sent by the backend's payout worker within a maintenance interval."""
    if getattr(request.app.state, "chain", None) is None:
        raise HTTPException(status.HTTP_409_CONFLICT, SETTLEMENT_OFF)
    profile = db.get(ProviderProfile, account.id)
    if profile is None or profile.wallet_address is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "link a wallet first: payouts go to it")
    from kumulus.backend import billing

    amount = (
        to_planck(settings, body.amount, "amount")
        if body.amount is not None
        else billing.balance(db, billing.PROVIDER, account.id)
    )
    try:
        payout = request_payout(
            db,
            account.id,
            profile.wallet_address,
            amount,
            to_planck(settings, settings.payout_minimum, "payout minimum"),
        )
    except PayoutError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return _payout_out(payout, settings)


@router.get("/provider/payouts", response_model=list[PayoutOut])
def list_payouts(account: CurrentProvider, db: Db, settings: Settings) -> list[PayoutOut]:
    rows = db.scalars(
        select(Payout).where(Payout.account_id == account.id).order_by(Payout.id.desc())
    )
    return [_payout_out(p, settings) for p in rows]
