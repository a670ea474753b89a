"""Developers' wallets (linked by signed challenge; their transfers to the deposit address
credit the balance), where to deposit, and providers' payout requests."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import ledger, paging, payout_wallet
from kumulus.backend.clock import utcnow
from kumulus.backend.hosts import to_planck
from kumulus.backend.models import Account, DeveloperWallet, Payout, ProviderProfile
from kumulus.backend.payouts import request_payout_to_wallet
from kumulus.backend.schemas import DepositInfo, PayoutOut, WalletLinkIn
from kumulus.backend.wallet_links import spend_challenge
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError
from kumulus.core.money import format_amount
from kumulus.core.signing import public_key_of

SETTLEMENT_OFF = (
    "on-chain settlement is off on this backend: start it with KUMULUS_BACKEND_CHAIN_URL set "
    "to a Substrate node (or run `kumulus up --chain-spec FILE` for a local chain)"
)


def settlement_off() -> ConflictError:
    return ConflictError(SETTLEMENT_OFF, code="settlement_off")


def link_developer_wallet(
    db: Session, settings: BackendSettings, account: Account, body: WalletLinkIn
) -> str:
    """Link the wallet that signed the account's challenge; its address in this chain's
    ss58 form (the deposit watcher looks senders up by it)."""
    spend_challenge(db, account, body)
    address = Keypair(
        public_key=public_key_of(body.address), ss58_format=settings.ss58_format
    ).ss58_address
    db.add(DeveloperWallet(address=address, account_id=account.id, linked_at=utcnow()))
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError("this wallet is linked already", code="wallet_taken") from exc
    return str(address)


def wallets_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[DeveloperWallet], str | None]:
    stmt = select(DeveloperWallet).where(DeveloperWallet.account_id == account.id)
    return paging.page(db, stmt, [DeveloperWallet.address], limit, after)


def deposit_info(settings: BackendSettings, deposit_address: str | None) -> DepositInfo:
    if deposit_address is None:
        raise settlement_off()
    return DepositInfo(
        address=deposit_address,
        chain_url=settings.chain_url or "",
        ss58_format=settings.ss58_format,
        token_decimals=settings.token_decimals,
        token_symbol=settings.token_symbol,
    )


def payout_out(settings: BackendSettings, p: Payout) -> PayoutOut:
    return PayoutOut(
        id=p.id,
        address=p.address,
        amount=format_amount(p.amount, settings.token_decimals, settings.token_symbol),
        status=p.status,
        extrinsic_hash=p.extrinsic_hash,
        block_number=p.block_number,
        error=p.error,
        created_at=p.created_at,
    )


def request_provider_payout(
    db: Session,
    settings: BackendSettings,
    account: Account,
    amount: str | None,
    settlement_on: bool,
) -> Payout:
    """Reserve earnings for a payout to the linked wallet (all of them unless `amount`);
    the payouts job sends it."""
    if not settlement_on:
        raise settlement_off()
    # Checked again under the balance lock by request_payout_to_wallet; here for the
    # clear answer before anything is computed.
    payout_wallet.payout_address(db.get(ProviderProfile, account.id), utcnow())
    cap = settings.payout_daily_cap_planck
    planck = (
        to_planck(settings, amount, "amount")
        if amount is not None
        else min(ledger.balance(db, ledger.PROVIDER, account.id), cap)
    )
    if planck > cap:
        # It could never be sent, and would hold back every payout behind it.
        raise ConflictError(
            f"at most {format_amount(cap, settings.token_decimals, settings.token_symbol)} "
            "can be paid out per payout (the daily payout cap): ask for less",
            code="payout_refused",
        )
    return request_payout_to_wallet(
        db,
        account.id,
        planck,
        to_planck(settings, settings.payout_minimum, "payout minimum"),
    )


def payouts_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[Payout], str | None]:
    stmt = select(Payout).where(Payout.account_id == account.id)
    return paging.page(db, stmt, [Payout.id], limit, after, descending=True)
