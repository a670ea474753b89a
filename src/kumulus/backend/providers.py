"""Providers: their profile and default prices, the payout wallet they link by signed
challenge, one-time host tokens, and their hosts. Raises the error family."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumulus.backend import accounts, host_keys, ledger, paging, payout_wallet, payouts, quotas
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.hosts import owned_host, prices_in, prices_out, starting_prices
from kumulus.backend.models import Account, Host, HostToken, ProviderProfile
from kumulus.backend.rate_limits import RateLimits
from kumulus.backend.schemas import (
    HostTokenCreated,
    HostTokenInfo,
    Prices,
    ProviderProfileIn,
    ProviderProfileOut,
    ProviderWalletLinkIn,
)
from kumulus.backend.security import hash_token, new_token
from kumulus.backend.wallet_links import spend_challenge
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError, ForbiddenError, UnauthorizedError
from kumulus.core.host_tokens import host_token_kind


def profile_of(db: Session, account: Account) -> ProviderProfile:
    """The provider's profile, made empty on first use (flushed, not committed)."""
    profile = db.get(ProviderProfile, account.id)
    if profile is None:
        profile = ProviderProfile(account_id=account.id, name="", contact="", country="", region="")
        db.add(profile)
        db.flush()
    return profile


def profile_out(profile: ProviderProfile, settings: BackendSettings) -> ProviderProfileOut:
    return ProviderProfileOut(
        name=profile.name,
        contact=profile.contact,
        country=profile.country,
        region=profile.region,
        wallet_address=profile.wallet_address,
        wallet_payouts_from=payout_wallet.payouts_from(profile, utcnow()),
        prices=prices_out(settings, *starting_prices(settings, profile)),
    )


def update_profile(
    db: Session, settings: BackendSettings, account: Account, body: ProviderProfileIn
) -> ProviderProfile:
    """Set the profile; `prices` (optional) are what hosts registered from now on charge."""
    profile = profile_of(db, account)
    prices = prices_in(settings, body.prices) if body.prices is not None else None
    profile.name, profile.contact = body.name, body.contact
    profile.country, profile.region = body.country, body.region
    if prices is not None:
        (
            profile.price_cpu_hour,
            profile.price_memory_gib_hour,
            profile.price_disk_gib_hour,
        ) = prices
    db.commit()
    return profile


def link_wallet(
    db: Session,
    settings: BackendSettings,
    limits: RateLimits,
    account: Account,
    body: ProviderWalletLinkIn,
) -> ProviderProfile:
    """Link the payout wallet that signed the account's challenge, revoking every host
    key delegation the wallet linked before signed (committed). Replacing a linked wallet
    needs the account's password (ForbiddenError `wrong_password`) and starts the payout
    cool-down: pending payouts are cancelled and payouts wait until it ends
    (payout_wallet.py)."""
    if body.password is None:
        _password_needed(profile_of(db, account), body.address)
    else:
        accounts.check_password(account, body.password, limits)
    spend_challenge(db, account, body)
    # The provider's balance lock, which payout requests take before reading the wallet:
    # a request racing this re-link either finishes first (and is cancelled below) or
    # reads the new wallet and its cool-down.
    ledger.lock(db, [ledger.key_of(ledger.PROVIDER, account.id), ledger.key_of(ledger.CHAIN, None)])
    profile = profile_of(db, account)
    db.refresh(profile)
    if body.password is None:
        # Again under the lock: a link of another wallet may have committed meanwhile, and
        # a password-less link must not replace it (with the wallet it replaced, say).
        try:
            _password_needed(profile, body.address)
        except ForbiddenError:
            db.rollback()
            raise
    now = utcnow()
    if payout_wallet.link(profile, body.address, now, timedelta(seconds=settings.wallet_cooldown)):
        payouts.cancel_pending(db, account.id, "the payout wallet was replaced")
    try:
        db.flush()
        # Delegations were signed by the wallet linked until now: none stands for the new one.
        host_keys.revoke_delegations(db, account, body.address)
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            "this wallet is linked to another account", code="wallet_taken"
        ) from exc
    return profile


def _password_needed(profile: ProviderProfile, address: str) -> None:
    if profile.wallet_address is not None and profile.wallet_address != address:
        raise ForbiddenError(
            "replacing the payout wallet needs your password", code="wrong_password"
        )


def new_host_token(
    db: Session, settings: BackendSettings, account: Account, backend_address: str
) -> HostTokenCreated:
    """A one-time token for the setup of a new host, carrying this backend's key
    (`backend_address`) for the host to pin; ConflictError without a wallet or past the
    host token or host quota (`quota_exceeded`)."""
    if profile_of(db, account).wallet_address is None:
        raise ConflictError(
            "link a wallet first: hosts prove they are yours by its signature",
            code="no_wallet",
        )
    quotas.check_host_tokens(db, account.id, settings.max_host_tokens, settings.max_hosts)
    token, digest = new_token(host_token_kind(backend_address))
    expires = utcnow() + timedelta(seconds=settings.host_token_ttl)
    db.add(
        HostToken(account_id=account.id, token_hash=digest, created_at=utcnow(), expires_at=expires)
    )
    db.commit()
    return HostTokenCreated(token=token, expires_at=expires)


def hosts_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[Host], str | None]:
    stmt = select(Host).where(Host.account_id == account.id)
    return paging.page(db, stmt, [Host.registered_at, Host.id], limit, after)


def set_host_prices(
    db: Session, settings: BackendSettings, account: Account, host_id: str, prices: Prices
) -> Host:
    """New prices for one host; VMs already placed keep the prices they were placed at."""
    host = owned_host(db, account, host_id)
    host.set_prices(*prices_in(settings, prices))  # and the reference price ranked by
    db.commit()
    return host


def host_token_info(db: Session, provider_token: str) -> HostTokenInfo:
    """For the holder of an unused provider token: the wallet the new host must sign
    with. UnauthorizedError for a token unknown, used or expired."""
    token = db.scalar(select(HostToken).where(HostToken.token_hash == hash_token(provider_token)))
    if token is None or token.used_at is not None or aware(token.expires_at) < utcnow():
        raise UnauthorizedError(
            "provider token unknown, used or expired: create a new one in the provider console",
            code="bad_host_token",
        )
    profile = db.get(ProviderProfile, token.account_id)
    if profile is None or profile.wallet_address is None:
        raise ConflictError("the provider has no linked wallet", code="no_wallet")
    return HostTokenInfo(wallet_address=profile.wallet_address, expires_at=token.expires_at)
