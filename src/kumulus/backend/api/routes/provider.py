"""Provider API: profile, wallet linking by signed challenge, host tokens, hosts."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kumulus.backend.clock import utcnow
from kumulus.backend.deps import CurrentProvider, Db, Settings
from kumulus.backend.hosts import host_public, prices_in, prices_out, starting_prices
from kumulus.backend.models import Account, Host, HostToken, ProviderProfile
from kumulus.backend.schemas import (
    HostPublic,
    HostTokenCreated,
    HostUpdate,
    ProviderProfileIn,
    ProviderProfileOut,
    WalletChallengeOut,
    WalletLinkIn,
)
from kumulus.backend.security import new_token
from kumulus.backend.wallet_links import new_challenge, spend_challenge
from kumulus.config import BackendSettings

router = APIRouter(prefix="/v1/provider", tags=["provider"])


def profile_of(db: Db, account: Account) -> ProviderProfile:
    profile = db.get(ProviderProfile, account.id)
    if profile is None:
        profile = ProviderProfile(account_id=account.id, name="", contact="", country="", region="")
        db.add(profile)
        db.flush()
    return profile


def _out(profile: ProviderProfile, settings: BackendSettings) -> ProviderProfileOut:
    return ProviderProfileOut(
        name=profile.name,
        contact=profile.contact,
        country=profile.country,
        region=profile.region,
        wallet_address=profile.wallet_address,
        prices=prices_out(settings, *starting_prices(settings, profile)),
    )


@router.get("/profile", response_model=ProviderProfileOut)
def get_profile(account: CurrentProvider, db: Db, settings: Settings) -> ProviderProfileOut:
    profile = profile_of(db, account)
    db.commit()
    return _out(profile, settings)


@router.put("/profile", response_model=ProviderProfileOut)
def put_profile(
    body: ProviderProfileIn, account: CurrentProvider, db: Db, settings: Settings
) -> ProviderProfileOut:
    """Profile; `prices` (optional) are what hosts registered from now on charge."""
    profile = profile_of(db, account)
    profile.name, profile.contact = body.name, body.contact
    profile.country, profile.region = body.country, body.region
    if body.prices is not None:
        (
            profile.price_cpu_hour,
            profile.price_memory_gib_hour,
            profile.price_disk_gib_hour,
        ) = prices_in(settings, body.prices)
    db.commit()
    return _out(profile, settings)


@router.post(
    "/wallet/challenge", response_model=WalletChallengeOut, status_code=status.HTTP_201_CREATED
)
def wallet_challenge(account: CurrentProvider, db: Db, settings: Settings) -> WalletChallengeOut:
    return new_challenge(db, account, settings.challenge_ttl, "")


@router.post("/wallet/link", response_model=ProviderProfileOut)
def wallet_link(
    body: WalletLinkIn, account: CurrentProvider, db: Db, settings: Settings
) -> ProviderProfileOut:
    spend_challenge(db, account, body)
    profile = profile_of(db, account)
    profile.wallet_address = body.address
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this wallet is linked to another account"
        ) from exc
    return _out(profile, settings)


@router.post("/host-tokens", response_model=HostTokenCreated, status_code=status.HTTP_201_CREATED)
def create_host_token(account: CurrentProvider, db: Db, settings: Settings) -> HostTokenCreated:
    if profile_of(db, account).wallet_address is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "link a wallet first: hosts prove they are yours by its signature",
        )
    token, digest = new_token("kmh")
    expires = utcnow() + timedelta(seconds=settings.host_token_ttl)
    db.add(
        HostToken(account_id=account.id, token_hash=digest, created_at=utcnow(), expires_at=expires)
    )
    db.commit()
    return HostTokenCreated(token=token, expires_at=expires)


@router.get("/hosts", response_model=list[HostPublic])
def list_hosts(account: CurrentProvider, db: Db, settings: Settings) -> list[HostPublic]:
    hosts = db.scalars(
        select(Host).where(Host.account_id == account.id).order_by(Host.registered_at)
    )
    return [host_public(h, settings) for h in hosts]


def _owned_host(db: Db, account: Account, host_id: str) -> Host:
    host = db.get(Host, host_id[:32])
    if host is None or host.account_id != account.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id[:40]}")
    return host


@router.get("/hosts/{host_id}", response_model=HostPublic)
def get_host(host_id: str, account: CurrentProvider, db: Db, settings: Settings) -> HostPublic:
    return host_public(_owned_host(db, account, host_id), settings)


@router.patch("/hosts/{host_id}", response_model=HostPublic)
def update_host(
    host_id: str, body: HostUpdate, account: CurrentProvider, db: Db, settings: Settings
) -> HostPublic:
    """Set the host's prices. VMs already placed keep the prices they were placed at."""
    host = _owned_host(db, account, host_id)
    (
        host.price_cpu_hour,
        host.price_memory_gib_hour,
        host.price_disk_gib_hour,
    ) = prices_in(settings, body.prices)
    db.commit()
    return host_public(host, settings)
