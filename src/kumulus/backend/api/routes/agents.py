"""Agent-facing API: every body is an envelope signed by the host's key (delegated by the
provider's wallet; the wallet itself for hosts set up before host keys; sr25519), fresh and
never seen before (nonces in the database), whose payload is then validated field by field
(backend/agent_payloads.py). Heartbeats are stored by the group-commit writer
(backend/heartbeats.py)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update

from kumulus.backend import host_keys, quotas
from kumulus.backend.agent_payloads import HeartbeatPayload, IpPayload, RegisterPayload
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.deps import Db, Settings
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome, VerifiedHeartbeat
from kumulus.backend.hosts import check_capacity, starting_prices
from kumulus.backend.isolation import judge
from kumulus.backend.isolation import parse as parse_isolation
from kumulus.backend.models import VM, Host, HostToken, ProviderProfile
from kumulus.backend.nonces import DbNonceStore
from kumulus.backend.rate_limits import RateLimits, get_rate_limits
from kumulus.backend.schemas import Accepted, DelegationIn, HostKeyOut, HostRegistered
from kumulus.backend.security import hash_token
from kumulus.config import BackendSettings
from kumulus.core.access import AgentSigned
from kumulus.core.errors import (
    ForbiddenError,
    InvalidError,
    KumulusError,
    NotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from kumulus.core.http import field_problems, validation_message
from kumulus.core.openapi_statuses import refusals
from kumulus.core.signing import Domain, SignatureError, SignedEnvelope, verify_envelope

router = APIRouter(prefix="/v1/hosts", tags=["agents"], dependencies=[AgentSigned])
_P = TypeVar("_P", bound=BaseModel)
HEARTBEAT_PATH = "/v1/hosts/heartbeat"
Limits = Annotated[RateLimits, Depends(get_rate_limits)]


def _verified(
    envelope: SignedEnvelope, domain: Domain, db: Db, settings: Settings
) -> dict[str, Any]:
    try:
        return verify_envelope(
            envelope,
            DbNonceStore(db, ttl=2 * settings.signature_max_skew + 5),
            domain=domain,
            max_skew=settings.signature_max_skew,
        )
    except SignatureError as exc:
        db.rollback()
        raise UnauthorizedError(f"signature refused: {exc.reason}", code="bad_signature") from exc


def _parse(model: type[_P], payload: dict[str, Any]) -> _P:
    """The signed payload as `model`; InvalidError (422, with the fields and why) if not."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = field_problems(exc.errors())
        raise InvalidError(
            f"invalid payload fields: {validation_message(problems)}", fields=problems
        ) from exc


def _host_for(db: Db, envelope: SignedEnvelope, host_id: str) -> Host:
    host = db.get(Host, host_id)
    # The signer must be the key this host signs with (backend/host_keys.py): a provider
    # can only speak for their own hosts, whatever host id they put in the payload.
    if host is None or host_keys.signing_address(host) != envelope.address:
        db.rollback()
        raise NotFoundError(f"no host {host_id} for this wallet")
    return host


@router.post(
    "/register",
    response_model=HostRegistered,
    status_code=status.HTTP_201_CREATED,
    responses=refusals(403, 409),
)
def register(
    envelope: SignedEnvelope, request: Request, db: Db, settings: Settings
) -> HostRegistered:
    payload = _parse(RegisterPayload, _verified(envelope, Domain.HOST_REGISTRATION, db, settings))
    capacity = payload.capacity
    try:
        check_capacity(settings, capacity.cpu, capacity.memory, capacity.disk)
    except InvalidError:
        db.rollback()  # the nonce stays unspent: the same envelope fails the same way
        raise
    token = db.scalar(
        select(HostToken).where(HostToken.token_hash == hash_token(payload.provider_token))
    )
    if token is None or token.used_at is not None or aware(token.expires_at) < utcnow():
        db.rollback()
        raise UnauthorizedError(
            "provider token unknown, used or expired: create a new one", code="bad_host_token"
        )
    profile = db.get(ProviderProfile, token.account_id)
    if profile is None or profile.wallet_address is None:
        db.rollback()
        raise ForbiddenError("the provider has no linked wallet")
    # Signed by the host's own key: pending until the wallet delegates it. Signed by the
    # wallet itself (agents set up before host keys): the wallet signs for it, as before.
    legacy = envelope.address == profile.wallet_address
    # Hosts may have registered since this token was made (within the quota then).
    quotas.check_hosts(db, token.account_id, settings.max_hosts)
    host_id = secrets.token_hex(8)
    prices = starting_prices(settings, profile)
    claimed = db.execute(
        update(HostToken)
        .where(HostToken.id == token.id, HostToken.used_at.is_(None))
        .values(used_at=utcnow(), host_id=host_id)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise UnauthorizedError("provider token already used", code="bad_host_token")
    host = Host(
        id=host_id,
        account_id=token.account_id,
        wallet_address=profile.wallet_address,
        host_key=None if legacy else envelope.address,
        host_key_state=host_keys.LEGACY if legacy else host_keys.PENDING,
        api_url=payload.api_url,
        public_ip=payload.public_ip,
        region=profile.region,
        cpu=payload.capacity.cpu,
        memory=payload.capacity.memory,
        disk=payload.capacity.disk,
        disk_quota=payload.disk_quota,
        agent_version=payload.agent_version,
        registered_at=utcnow(),
    )
    host.isolated, host.isolation_problem = judge(payload.isolation)
    host.set_prices(*prices)
    db.add(host)
    db.commit()
    return HostRegistered(
        host_id=host_id,
        backend_address=request.app.state.keypair.ss58_address,
        heartbeat_path=HEARTBEAT_PATH,
        host_key_state=host.host_key_state,  # type: ignore[arg-type]
    )


class _SpendLater:
    """Nonce store for heartbeats: the writer claims the nonce in the batch's transaction
    (HeartbeatWriter), so here every nonce passes."""

    def check_and_store(self, signer: str, nonce: str, now: float | None = None) -> bool:
        return True


def accept_heartbeat(
    envelope: SignedEnvelope,
    writer: HeartbeatWriter,
    settings: BackendSettings,
    limits: RateLimits | None = None,
) -> None:
    """Verify a signed heartbeat and store it through the group-commit writer; raises the
    HTTP error to answer otherwise (413 over `heartbeat_max_bytes`, 429 over the host's
    rate in `limits`). Returns once the heartbeat is committed."""
    size = len(json.dumps(envelope.payload, separators=(",", ":"), allow_nan=False))
    if size > settings.heartbeat_max_bytes:
        raise TooLargeError(
            f"heartbeat payload of {size} bytes; at most {settings.heartbeat_max_bytes}"
        )
    try:
        payload = verify_envelope(
            envelope, _SpendLater(), domain=Domain.HEARTBEAT, max_skew=settings.signature_max_skew
        )
    except SignatureError as exc:
        raise UnauthorizedError(f"signature refused: {exc.reason}", code="bad_signature") from exc
    parsed = _parse(HeartbeatPayload, payload)
    if limits is not None:
        # After the signature: only the holder of the key spends its (signer, host) budget.
        limits.heartbeat(envelope.address, parsed.host_id)
    stored = parsed.stored()
    isolated, isolation_problem = judge(parse_isolation(payload))
    beat = VerifiedHeartbeat(
        address=envelope.address,
        nonce=envelope.nonce,
        signed_at=envelope.timestamp,
        host_id=parsed.host_id,
        agent_version=parsed.agent_version,
        payload=stored,
        inventory=parsed.inventory(),
        disk_usage=parsed.disk_usage(),
        nonce_expires_at=time.time() + 2 * settings.signature_max_skew + 5,
        machine=stored.get("host"),
        isolated=isolated,
        isolation_problem=isolation_problem,
    )
    try:
        outcome = writer.submit(beat).result(timeout=30)
    except Exception as exc:
        raise UnavailableError("could not store the heartbeat; retry") from exc
    if outcome is Outcome.REPLAYED:
        raise UnauthorizedError(
            "signature refused: replayed envelope (nonce already used)", code="replayed"
        )
    if outcome is Outcome.UNKNOWN_HOST:
        raise NotFoundError(f"no host {parsed.host_id} for this key")
    if outcome is Outcome.NOT_DELEGATED:
        raise UnauthorizedError(
            "signature refused: this host's key has no standing delegation (never delegated, "
            "expired, or dropped when the provider linked another wallet): delegate it with "
            "the wallet linked now",
            code="not_delegated",
        )
    if outcome is Outcome.REVOKED:
        raise UnauthorizedError(
            "signature refused: this host's key was revoked by its provider", code="revoked"
        )


@router.post("/heartbeat", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
def heartbeat(
    envelope: SignedEnvelope, request: Request, settings: Settings, limits: Limits
) -> Accepted:
    events = getattr(request.app.state, "events", None)
    try:
        accept_heartbeat(envelope, request.app.state.heartbeats, settings, limits)
    except KumulusError as exc:
        if events is not None:
            events.heartbeat(refused=exc.error_code)
        raise
    if events is not None:
        events.heartbeat()
    return Accepted()


@router.post("/ip", response_model=Accepted)
def update_ip(envelope: SignedEnvelope, db: Db, settings: Settings) -> Accepted:
    parsed = _parse(IpPayload, _verified(envelope, Domain.HOST_IP, db, settings))
    if parsed.kind != "ip":
        raise InvalidError("payload kind must be 'ip'")
    host = _host_for(db, envelope, parsed.host_id)
    host.public_ip = parsed.public_ip
    # The VMs there are reached at the new address from now on (validated above).
    db.execute(
        update(VM)
        .where(VM.host_id == host.id, VM.ssh_host.is_not(None), VM.actual_state != "deleted")
        .values(ssh_host=parsed.public_ip)
    )
    db.commit()
    return Accepted()


@router.post("/delegation", response_model=HostKeyOut, responses=refusals(409))
def delegation(body: DelegationIn, db: Db) -> HostKeyOut:
    """Accept the provider wallet's delegation of a host key (the text of
    `GET /v1/provider/hosts/{id}/delegation`, signed raw or `<Bytes>`-wrapped). Open: the
    wallet's signature is the authentication, so the host's setup can send it."""
    return host_keys.key_out(host_keys.delegate(db, body.message, body.signature))
