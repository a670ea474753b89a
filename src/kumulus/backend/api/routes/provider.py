"""Provider API: profile, wallet linking by signed challenge, host tokens, hosts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from kumulus.backend import host_keys, hosts, providers
from kumulus.backend.deps import CurrentProvider, Db, ResourceId, Settings
from kumulus.backend.hosts import host_public
from kumulus.backend.paging import After, Limit
from kumulus.backend.rate_limits import RateLimits, get_rate_limits
from kumulus.backend.schemas import (
    DelegationOut,
    HostKeyOut,
    HostPublic,
    HostTokenCreated,
    HostUpdate,
    ProviderProfileIn,
    ProviderProfileOut,
    ProviderWalletLinkIn,
    WalletChallengeOut,
)
from kumulus.backend.wallet_links import new_challenge
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1/provider", tags=["provider"], route_class=AuthFirstRoute)


@router.get("/profile", response_model=ProviderProfileOut)
def get_profile(account: CurrentProvider, db: Db, settings: Settings) -> ProviderProfileOut:
    profile = providers.profile_of(db, account)
    db.commit()
    return providers.profile_out(profile, settings)


@router.put("/profile", response_model=ProviderProfileOut)
def put_profile(
    body: ProviderProfileIn, account: CurrentProvider, db: Db, settings: Settings
) -> ProviderProfileOut:
    """Profile; `prices` (optional) are what hosts registered from now on charge."""
    profile = providers.update_profile(db, settings, account, body)
    return providers.profile_out(profile, settings)


@router.post(
    "/wallet/challenge", response_model=WalletChallengeOut, status_code=status.HTTP_201_CREATED
)
def wallet_challenge(account: CurrentProvider, db: Db, settings: Settings) -> WalletChallengeOut:
    return new_challenge(db, account, settings.challenge_ttl, "")


@router.post("/wallet/link", response_model=ProviderProfileOut, responses=refusals(404, 409))
def wallet_link(
    body: ProviderWalletLinkIn,
    account: CurrentProvider,
    db: Db,
    settings: Settings,
    limits: Annotated[RateLimits, Depends(get_rate_limits)],
) -> ProviderProfileOut:
    """Link the wallet that signed the challenge. Replacing a linked wallet needs
    `password` (403 `wrong_password`), cancels pending payouts and pauses payouts until
    `walletPayoutsFrom` (the cool-down); it also revokes every host-key delegation."""
    profile = providers.link_wallet(db, settings, limits, account, body)
    return providers.profile_out(profile, settings)


@router.post(
    "/host-tokens",
    response_model=HostTokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses=refusals(409),
)
def create_host_token(
    request: Request, account: CurrentProvider, db: Db, settings: Settings
) -> HostTokenCreated:
    backend_address = str(request.app.state.keypair.ss58_address)
    return providers.new_host_token(db, settings, account, backend_address)


@router.get("/hosts", response_model=Page[HostPublic])
def list_hosts(
    account: CurrentProvider, db: Db, settings: Settings, limit: Limit = 50, after: After = None
) -> Page[HostPublic]:
    rows, next_cursor = providers.hosts_page(db, account, limit, after)
    return Page(items=[host_public(h, settings) for h in rows], next=next_cursor)


@router.get("/hosts/{host_id}", response_model=HostPublic)
def get_host(
    host_id: ResourceId, account: CurrentProvider, db: Db, settings: Settings
) -> HostPublic:
    return host_public(hosts.owned_host(db, account, host_id), settings)


@router.patch("/hosts/{host_id}", response_model=HostPublic, responses=refusals(404))
def update_host(
    host_id: ResourceId, body: HostUpdate, account: CurrentProvider, db: Db, settings: Settings
) -> HostPublic:
    """Set the host's prices (VMs already placed keep the prices they were placed at)
    and/or whether it drains (takes no new VMs; those there keep running)."""
    host = hosts.owned_host(db, account, host_id)
    if body.prices is not None:
        host = providers.set_host_prices(db, settings, account, host_id, body.prices)
    if body.draining is not None:
        host = hosts.set_draining(db, account, host_id, body.draining)
    return host_public(host, settings)


@router.get("/hosts/{host_id}/delegation", response_model=DelegationOut)
def host_delegation(host_id: ResourceId, account: CurrentProvider, db: Db) -> DelegationOut:
    """The host key's state and the text to sign with the wallet to delegate it (send the
    signature to `POST /v1/hosts/delegation`)."""
    return host_keys.to_sign(hosts.owned_host(db, account, host_id))


@router.post("/hosts/{host_id}/revoke-key", response_model=HostKeyOut, responses=refusals(409))
def revoke_host_key(host_id: ResourceId, account: CurrentProvider, db: Db) -> HostKeyOut:
    """Revoke the host's key for good: its heartbeats and answers are refused from now on
    and it takes no new VMs."""
    return host_keys.key_out(host_keys.revoke(db, hosts.owned_host(db, account, host_id)))
