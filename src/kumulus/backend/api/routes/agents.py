"""Agent-facing API: every body is an envelope signed by the provider's wallet key
(sr25519), fresh and never seen before (nonces in the database)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import insert, select, update

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.deps import Db, Settings
from kumulus.backend.models import Heartbeat, Host, HostToken, ProviderProfile
from kumulus.backend.nonces import DbNonceStore
from kumulus.backend.schemas import Accepted, HostRegistered
from kumulus.backend.security import hash_token
from kumulus.backend.vms import reconcile_inventory
from kumulus.core.schemas import Capacity
from kumulus.core.signing import SignatureError, SignedEnvelope, verify_envelope

router = APIRouter(prefix="/v1/hosts", tags=["agents"])
_P = TypeVar("_P", bound=BaseModel)
HEARTBEAT_PATH = "/v1/hosts/heartbeat"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class RegisterPayload(_Payload):
    kind: str = Field(pattern="^register$")
    provider_token: str = Field(alias="providerToken", max_length=128)
    api_url: str = Field(alias="apiUrl", pattern=r"^https?://[^\s/]+(:\d+)?/?$", max_length=255)
    public_ip: str = Field(alias="publicIp", max_length=64)
    capacity: Capacity
    disk_quota: bool = Field(alias="diskQuota")
    agent_version: str = Field(alias="agentVersion", max_length=32)


class HostPayload(_Payload):
    kind: str
    host_id: str = Field(alias="hostId", max_length=32)


class IpPayload(HostPayload):
    public_ip: str = Field(alias="publicIp", max_length=64)


def _verified(envelope: SignedEnvelope, db: Db, settings: Settings) -> dict[str, Any]:
    try:
        return verify_envelope(
            envelope,
            DbNonceStore(db, ttl=2 * settings.signature_max_skew + 5),
            max_skew=settings.signature_max_skew,
        )
    except SignatureError as exc:
        db.rollback()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"signature refused: {exc.reason}"
        ) from exc


def _parse(model: type[_P], payload: dict[str, Any]) -> _P:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise HTTPException(422, f"invalid payload fields: {fields}") from exc


def _owned_host_id(db: Db, envelope: SignedEnvelope, host_id: str) -> str:
    """The host id, once the signer is proven to be the wallet that registered it."""
    wallet = db.scalar(select(Host.wallet_address).where(Host.id == host_id))
    if wallet is None or wallet != envelope.address:
        db.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id} for this wallet")
    return host_id


def _host_for(db: Db, envelope: SignedEnvelope, host_id: str) -> Host:
    host = db.get(Host, host_id)
    # The signer must be the wallet this host registered with: a provider can only speak
    # for their own hosts, whatever host id they put in the payload.
    if host is None or host.wallet_address != envelope.address:
        db.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id} for this wallet")
    return host


@router.post("/register", response_model=HostRegistered, status_code=status.HTTP_201_CREATED)
def register(
    envelope: SignedEnvelope, request: Request, db: Db, settings: Settings
) -> HostRegistered:
    payload = _parse(RegisterPayload, _verified(envelope, db, settings))
    token = db.scalar(
        select(HostToken).where(HostToken.token_hash == hash_token(payload.provider_token))
    )
    if token is None or token.used_at is not None or aware(token.expires_at) < utcnow():
        db.rollback()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "provider token unknown, used or expired: create a new one",
        )
    profile = db.get(ProviderProfile, token.account_id)
    if profile is None or profile.wallet_address != envelope.address:
        db.rollback()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "signed by a wallet other than the one linked to this provider",
        )
    host_id = secrets.token_hex(8)
    claimed = db.execute(
        update(HostToken)
        .where(HostToken.id == token.id, HostToken.used_at.is_(None))
        .values(used_at=utcnow(), host_id=host_id)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "provider token already used")
    db.add(
        Host(
            id=host_id,
            account_id=token.account_id,
            wallet_address=envelope.address,
            api_url=payload.api_url.rstrip("/"),
            public_ip=payload.public_ip,
            region=profile.region,
            cpu=payload.capacity.cpu,
            memory=payload.capacity.memory,
            disk=payload.capacity.disk,
            disk_quota=payload.disk_quota,
            agent_version=payload.agent_version,
            registered_at=utcnow(),
        )
    )
    db.commit()
    return HostRegistered(
        host_id=host_id,
        backend_address=request.app.state.keypair.ss58_address,
        heartbeat_path=HEARTBEAT_PATH,
    )


@router.post("/heartbeat", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
def heartbeat(envelope: SignedEnvelope, db: Db, settings: Settings) -> Accepted:
    payload = _verified(envelope, db, settings)
    parsed = _parse(HostPayload, payload)
    if parsed.kind != "health":
        raise HTTPException(422, "payload kind must be 'health'")
    host_id = _owned_host_id(db, envelope, parsed.host_id)
    now = utcnow()
    # Core statements, not ORM objects: this runs for every host every few seconds.
    db.execute(
        insert(Heartbeat).values(
            host_id=host_id, received_at=now, signed_at=envelope.timestamp, payload=payload
        )
    )
    changes: dict[str, Any] = {
        "last_heartbeat_at": now,
        "agent_version": str(payload.get("agentVersion", ""))[:32],
    }
    stats = payload.get("vmStats")
    if isinstance(stats, list):
        inventory = {
            str(item.get("vmId")): str(item.get("state"))
            for item in stats
            if isinstance(item, dict) and item.get("vmId")
        }
        as_of = datetime.fromtimestamp(envelope.timestamp, UTC)
        changes["unknown_vms"] = reconcile_inventory(db, host_id, inventory, as_of)
    db.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return Accepted()


@router.post("/ip", response_model=Accepted)
def update_ip(envelope: SignedEnvelope, db: Db, settings: Settings) -> Accepted:
    parsed = _parse(IpPayload, _verified(envelope, db, settings))
    if parsed.kind != "ip":
        raise HTTPException(422, "payload kind must be 'ip'")
    host = _host_for(db, envelope, parsed.host_id)
    host.public_ip = parsed.public_ip
    db.commit()
    return Accepted()
