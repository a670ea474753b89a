"""Agent-facing API: every body is an envelope signed by the host's key (delegated by the
provider's wallet; the wallet itself for hosts registered before host keys, which no new
host may do; sr25519), fresh and never seen before (registrations and addresses: nonces
in the database; heartbeats: signed later than the host's newest stored), whose payload
is then validated field by field (backend/agent_payloads.py). The signature is checked
before FastAPI parses the body (core/auth_first.py): anything but a well-signed envelope is
a 401. Heartbeats are stored by the group-commit writer (backend/heartbeats.py), on threads
of their own."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kumulus.backend import host_keys, quotas
from kumulus.backend.agent_payloads import HeartbeatPayload, IpPayload, RegisterPayload
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.deps import Db, Settings
from kumulus.backend.heartbeat_intake import HeartbeatIntake
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome, VerifiedHeartbeat, settle
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
from kumulus.core.auth_first import AuthFirstRoute, Gate, gated
from kumulus.core.errors import (
    FieldProblem,
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
from kumulus.core.public_dial import named_not_public
from kumulus.core.signing import (
    Domain,
    SignatureError,
    SignedEnvelope,
    envelope_message,
    payload_size,
    verify_envelope_message,
)

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/hosts", tags=["agents"], dependencies=[AgentSigned], route_class=AuthFirstRoute
)
_P = TypeVar("_P", bound=BaseModel)
HEARTBEAT_PATH = "/v1/hosts/heartbeat"
# What a signed envelope adds around its payload (address, timestamp, nonce, signature,
# keys): a heartbeat's body may be this much larger than its payload.
ENVELOPE_OVERHEAD = 1024
Limits = Annotated[RateLimits, Depends(get_rate_limits)]


def _verify(envelope: SignedEnvelope, domain: Domain, settings: BackendSettings) -> bytes:
    """Signature and freshness of `envelope` as kind `domain` (not whether it is new:
    decided later, in the transaction that acts on it); returns the signed message.
    Blocking (sr25519): run on a thread."""
    try:
        return verify_envelope_message(
            envelope, _SpendLater(), domain=domain, max_skew=settings.signature_max_skew
        )
    except SignatureError as exc:
        raise UnauthorizedError(f"signature refused: {exc.reason}", code="bad_signature") from exc


def _read_envelope(body: bytes) -> SignedEnvelope:
    """`body` as a signed envelope; a 401 when it is not one, whatever it holds."""
    try:
        return SignedEnvelope.model_validate_json(body)
    except ValidationError as exc:
        raise UnauthorizedError(
            "signature refused: the body is not a signed envelope", code="bad_signature"
        ) from exc


def _read_and_verify(body: bytes, domain: Domain, settings: BackendSettings) -> SignedEnvelope:
    """`body` as an envelope of kind `domain` whose signature holds (_read_envelope,
    _verify). Blocking (parsing up to the body limit, sr25519): run on a thread."""
    envelope = _read_envelope(body)
    _verify(envelope, domain, settings)
    return envelope


def verify_and_store(
    envelope: SignedEnvelope | bytes,
    waiter: asyncio.Future[Outcome | KumulusError],
    prepared: list[VerifiedHeartbeat],
    *,
    settings: BackendSettings,
    limits: RateLimits | None,
    writer: HeartbeatWriter,
) -> None:
    """On a heartbeat thread: the envelope read from the request's body when that is what
    `envelope` is (parsing a 64 KiB body of nested lists takes ~20 ms: not on the event
    loop), then the signature (a refusal becomes `waiter`'s exception),
    then what the writer stores of the heartbeat (an error to answer becomes `waiter`'s
    result, so that the route counts it as a refusal), appended to `prepared` and handed
    to the writer, which resolves `waiter` on its loop with the outcome once the batch
    committed. One trip per heartbeat: the caller awaits `waiter` alone (each trip
    between the event loop and a thread costs the loop about as much as the
    verification)."""
    if waiter.done():
        return  # its request gave up (timed out under load): no work for nobody
    loop = waiter.get_loop()
    try:
        if isinstance(envelope, bytes):
            envelope = _read_envelope(envelope)
        message = _verify(envelope, Domain.HEARTBEAT, settings)
        try:
            beat = prepare_heartbeat(envelope, settings, limits, message=message)
        except KumulusError as exc:
            settle(loop, [(waiter, exc, False)])
            return
        beat.waiter = waiter
        prepared.append(beat)
        writer.submit_waiting(beat)
    except Exception as exc:  # every failure goes to the waiting request
        settle(loop, [(waiter, exc, True)])


def _signed_first(domain: Domain, heartbeat: bool = False) -> Gate:
    """A gate (core/auth_first.py) that takes the raw body (bounded by core/body_limit.py)
    as an envelope and checks its signature before FastAPI parses anything: a body that is
    not a well-signed envelope of kind `domain` is a 401, whatever it holds. Heartbeats are
    verified on their own threads (the app's `heartbeat_intake`)."""

    async def gate(request: Request) -> None:
        if heartbeat:
            limits: RateLimits = request.app.state.rate_limits
            limits.heartbeat_from(limits.client_ip(request))
            # Read, verified, prepared and handed to the writer on one trip to a heartbeat
            # thread (the app's `heartbeat_intake`); the batch's commit is awaited here,
            # holding no thread: heartbeats in flight are bounded by the writer's batches.
            intake: HeartbeatIntake = request.app.state.heartbeat_intake
            waiter: asyncio.Future[Outcome | KumulusError] = (
                asyncio.get_running_loop().create_future()
            )
            prepared: list[VerifiedHeartbeat] = []
            try:
                intake.submit(await request.body(), waiter, prepared)  # verify_and_store
                async with asyncio.timeout(30):
                    result = await waiter
            except KumulusError:
                raise  # the signature: refused before anything else is read
            except Exception as exc:  # the database, no answer in time, or shutting down
                log.warning("a heartbeat was not stored: %s", type(exc).__name__)
                result = UnavailableError("could not store the heartbeat; retry")
            request.state.heartbeat = (prepared[0] if prepared else None, result)
            return
        settings: BackendSettings = request.app.state.settings
        request.state.envelope = await anyio.to_thread.run_sync(
            _read_and_verify, await request.body(), domain, settings
        )

    return gate


def _verified_by_gate(request: Request) -> SignedEnvelope:
    envelope = getattr(request.state, "envelope", None)
    if not isinstance(envelope, SignedEnvelope):
        raise UnauthorizedError("signature refused: not verified", code="bad_signature")
    return envelope


@gated(_signed_first(Domain.HOST_REGISTRATION))
async def _registration(request: Request) -> SignedEnvelope:
    return _verified_by_gate(request)


@gated(_signed_first(Domain.HOST_IP))
async def _ip_change(request: Request) -> SignedEnvelope:
    return _verified_by_gate(request)


@gated(_signed_first(Domain.HEARTBEAT, heartbeat=True))
async def _heartbeat(request: Request) -> tuple[object, object]:
    """The gate's (verify_and_store): the heartbeat as prepared, and the writer's outcome
    or the error to answer."""
    answer: tuple[object, object] = getattr(request.state, "heartbeat", (None, None))
    return answer


# The verified envelope of each kind. The routes declare their body as a `SignedEnvelope`
# for the documentation only (`ENVELOPE_BODY`): FastAPI parsing it again would do so on
# the event loop, for anyone (any fresh key signs a valid envelope, and one whose payload
# is refused leaves its nonce unspent: replayable; attack20). The body is read once, by
# the gate, on a thread.
ENVELOPE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SignedEnvelope"}}
        },
    }
}
SignedRegistration = Annotated[SignedEnvelope, Depends(_registration)]
SignedIpChange = Annotated[SignedEnvelope, Depends(_ip_change)]
HeartbeatStored = Annotated[tuple[object, object], Depends(_heartbeat)]


def _claim(db: Session, envelope: SignedEnvelope, settings: BackendSettings) -> None:
    """Spend the envelope's nonce in the caller's transaction; 401 if it was spent."""
    nonces = DbNonceStore(db, ttl=2 * settings.signature_max_skew + 5)
    if not nonces.check_and_store(envelope.address, envelope.nonce):
        db.rollback()
        raise UnauthorizedError(
            "signature refused: replayed envelope (nonce already used)", code="replayed"
        )


def _parse(model: type[_P], payload: dict[str, Any]) -> _P:
    """The signed payload as `model`; InvalidError (422, with the fields and why) if not."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = field_problems(exc.errors())
        raise InvalidError(
            f"invalid payload fields: {validation_message(problems)}", fields=problems
        ) from exc


def _check_api_url(settings: BackendSettings, api_url: str) -> None:
    """An agent at an address that is plainly not public (an IP literal, localhost) is
    refused at once (422) rather than registered and never called; DNS names are checked
    on every call (kumulus.client.AgentClient)."""
    if settings.allow_private_agents:
        return
    problem = named_not_public(urlsplit(api_url).hostname or "")
    if problem is not None:
        raise InvalidError(
            f"apiUrl: {problem}; agents must be reachable at a public address",
            fields=[FieldProblem(loc=("payload", "apiUrl"), msg=f"{problem}: not public")],
        )


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
    responses=refusals(403, 409, 413, 422),  # the body is read by the gate, not by FastAPI
    openapi_extra=ENVELOPE_BODY,
)
def register(
    envelope: SignedRegistration,
    request: Request,
    db: Db,
    settings: Settings,
) -> HostRegistered:
    _claim(db, envelope, settings)
    payload = _parse(RegisterPayload, envelope.payload)
    capacity = payload.capacity
    try:
        check_capacity(settings, capacity.cpu, capacity.memory, capacity.disk)
        _check_api_url(settings, payload.api_url)
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
    if envelope.address == profile.wallet_address:
        # No wallet key on any host: a host signing with the wallet itself is a host whose
        # theft is the provider's money gone. Hosts registered so before host keys keep
        # working until their next setup run delegates them a key; no new one joins so.
        db.rollback()  # neither the token nor the nonce is spent: register again, right
        raise ForbiddenError(
            "a new host registers with a key of its own, not with the wallet: set it up "
            "with provider-setup.sh (or run kumulus agent host-key, kumulus agent register, "
            "then kumulus agent delegate, which uses the wallet once and stores nothing)",
            code="wallet_signed",
        )
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
        # Pending until the wallet delegates it (host_keys.delegate).
        host_key=envelope.address,
        host_key_state=host_keys.PENDING,
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
    message = _verify(envelope, Domain.HEARTBEAT, settings)
    store_heartbeat(envelope, writer, settings, limits, message=message)


def prepare_heartbeat(
    envelope: SignedEnvelope,
    settings: BackendSettings,
    limits: RateLimits | None = None,
    *,
    message: bytes | None = None,
) -> VerifiedHeartbeat:
    """What the writer stores of a heartbeat whose signature was verified (whether it is
    new is decided by the writer, in the batch's transaction); raises the HTTP error to answer
    otherwise (413 over `heartbeat_max_bytes`, 422 for a bad payload, 429 over the host's
    rate in `limits`). `message` is the signed message the verification returned, when
    the caller has it: the payload's size is read off it. Blocking (parsing)."""
    payload = envelope.payload
    if message is None:
        message = envelope_message(envelope, Domain.HEARTBEAT)
    size = payload_size(envelope, Domain.HEARTBEAT, message)
    if size > settings.heartbeat_max_bytes:
        raise TooLargeError(
            f"heartbeat payload of {size} bytes; at most {settings.heartbeat_max_bytes}"
        )
    parsed = _parse(HeartbeatPayload, payload)
    if limits is not None:
        # After the signature: only the holder of the key spends its (signer, host) budget.
        limits.heartbeat(envelope.address, parsed.host_id)
    stored = parsed.stored()
    isolated, isolation_problem = judge(parse_isolation(payload))
    return VerifiedHeartbeat(
        address=envelope.address,
        nonce=envelope.nonce,
        signed_at=envelope.timestamp,
        host_id=parsed.host_id,
        agent_version=parsed.agent_version,
        agent_run=parsed.agent_run,
        engine_up=parsed.docker.up if parsed.docker is not None else None,
        payload=stored,
        inventory=parsed.inventory(),
        disk_usage=parsed.disk_usage(),
        machine=stored.get("host"),
        isolated=isolated,
        isolation_problem=isolation_problem,
    )


def check_outcome(beat: VerifiedHeartbeat, outcome: Outcome) -> None:
    """Raise the HTTP error for a heartbeat the writer did not store."""
    if outcome is Outcome.REPLAYED:
        raise UnauthorizedError(
            "signature refused: replayed envelope (this host already sent a heartbeat signed"
            " at that time or later: a replay, or its clock went back)",
            code="replayed",
        )
    if outcome is Outcome.UNKNOWN_HOST:
        raise NotFoundError(f"no host {beat.host_id} for this key")
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


def store_heartbeat(
    envelope: SignedEnvelope,
    writer: HeartbeatWriter,
    settings: BackendSettings,
    limits: RateLimits | None = None,
    *,
    message: bytes | None = None,
) -> None:
    """Store a verified heartbeat and wait for its batch's commit (prepare_heartbeat,
    check_outcome). Blocking: for callers on threads (benchmarks, accept_heartbeat)."""
    beat = prepare_heartbeat(envelope, settings, limits, message=message)
    try:
        outcome = writer.submit(beat).result(timeout=30)
    except Exception as exc:
        raise UnavailableError("could not store the heartbeat; retry") from exc
    check_outcome(beat, outcome)


@router.post(
    "/heartbeat",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=refusals(413, 422, 429),  # the body is read by the gate, not by FastAPI
    openapi_extra=ENVELOPE_BODY,
)
async def heartbeat(stored: HeartbeatStored, request: Request) -> Accepted:
    """Store a host's signed heartbeat (at most `heartbeat_max_bytes`). Served on threads
    of its own (the app's `heartbeat_intake`), with no dependency on the shared pool; 429 over the
    host's rate. Counted as accepted or refused (by reason) in the metrics."""
    app = request.app
    events = getattr(app.state, "events", None)
    try:
        beat, result = stored
        if isinstance(result, KumulusError):
            raise result
        if not isinstance(beat, VerifiedHeartbeat) or not isinstance(result, Outcome):
            raise UnauthorizedError("signature refused: not verified", code="bad_signature")
        check_outcome(beat, result)
    except KumulusError as exc:
        if events is not None:
            events.heartbeat(refused=exc.error_code)
        raise
    if events is not None:
        events.heartbeat()
    return Accepted()


@router.post(
    "/ip", response_model=Accepted, responses=refusals(413, 422), openapi_extra=ENVELOPE_BODY
)
def update_ip(envelope: SignedIpChange, db: Db, settings: Settings) -> Accepted:
    _claim(db, envelope, settings)
    parsed = _parse(IpPayload, envelope.payload)
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
def delegation(body: DelegationIn, db: Db, settings: Settings) -> HostKeyOut:
    """Accept the provider wallet's delegation of a host key (the text of
    `GET /v1/provider/hosts/{id}/delegation`, signed raw or `<Bytes>`-wrapped). Open: the
    wallet's signature is the authentication, so the host's setup can send it."""
    return host_keys.key_out(
        host_keys.delegate(db, body.message, body.signature, settings.signature_max_skew)
    )
