"""Who may call the agent: the provider (local admin token) or the pinned backend (signed).

Every VM and host route depends on `Caller`, whose caller is authenticated before the
route's body is parsed (core/auth_first.py): an anonymous request is a 401 whatever its
body. Only /healthz and the API description (/docs, /openapi.json) are open; they reveal
nothing about VMs.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import Depends, Request

from kumulus.agent.registration import load_registration, read_pinned_backend
from kumulus.agent.signed_answers import mark_signed_request
from kumulus.core.access import Access, marked
from kumulus.core.auth_first import gated
from kumulus.core.errors import UnauthorizedError
from kumulus.core.signing import (
    HDR_ADDRESS,
    HDR_NONCE,
    HDR_SIGNATURE,
    NonceCache,
    SecretFileError,
    SignatureError,
    read_secret_file,
    verify_request,
    write_secret_file,
)

log = logging.getLogger(__name__)


def ensure_admin_token(path: Path) -> str:
    """Return the agent's admin token, creating it (0600) on first use."""
    if path.exists():
        return read_secret_file(path)
    token = secrets.token_urlsafe(32)
    write_secret_file(path, token)
    log.info("created the agent admin token file %s (mode 0600)", path)
    return token


def ensure_agent_id(state_dir: Path) -> str:
    """This agent's stable id (labels its VMs), created on first start. Written atomically:
    losing it would hide every existing VM from the agent."""
    path = state_dir / "agent-id"
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    if not value:
        value = secrets.token_hex(8)
        write_secret_file(path, value)
    return value


@dataclass(frozen=True)
class AuthConfig:
    admin_token: str
    backend_key_file: Path
    state_dir: Path
    agent_id: str
    nonces: NonceCache
    max_skew: float
    started_at: float

    def audience(self) -> str:
        """Signed calls name the agent they are for: its host id once registered."""
        reg = load_registration(self.state_dir)
        return reg.host_id if reg else self.agent_id


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "backend"]
    address: str | None = None


def _unauthorized(detail: str) -> UnauthorizedError:
    return UnauthorizedError(detail)


def _verify_signed(cfg: AuthConfig, request: Request, body: bytes) -> str:
    """The pinned backend's address when `request` is signed by it over `body`; raises
    UnauthorizedError otherwise. Blocking (files, sr25519): run on a thread."""
    # Read on every request: the pin is set when the agent registers with a backend.
    pinned = read_pinned_backend(cfg.backend_key_file)
    if pinned is None:
        raise _unauthorized("this agent has no pinned backend key; signed calls are refused")
    if request.headers.get(HDR_ADDRESS) != pinned:
        raise _unauthorized(
            "signature refused: request is signed by a key this agent does not trust"
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        verify_request(
            request.headers,
            request.method,
            target,
            body,
            cfg.nonces,
            expected_address=pinned,
            audience=cfg.audience(),
            max_skew=cfg.max_skew,
            not_before=cfg.started_at,
        )
    except SignatureError as exc:
        raise _unauthorized(f"signature refused: {exc.reason}") from exc
    return pinned


async def _principal(request: Request) -> Principal:
    cfg: AuthConfig = request.app.state.auth
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("use 'Authorization: Bearer <token>' (kumulus agent token)")
        if hmac.compare_digest(token.strip().encode(), cfg.admin_token.encode()):
            return Principal(kind="admin")
        raise _unauthorized("invalid token")
    if HDR_SIGNATURE.lower() in request.headers:
        # The body was bounded and read whole by core/body_limit.py; the signature covers
        # its hash, so it is checked before anything parses it.
        body = await request.body()
        pinned = await anyio.to_thread.run_sync(_verify_signed, cfg, request, body)
        mark_signed_request(request.scope, request.headers[HDR_NONCE])
        return Principal(kind="backend", address=pinned)
    raise _unauthorized("authentication required: send 'Authorization: Bearer <token>'")


async def _authenticate_first(request: Request) -> None:
    request.state.principal = await _principal(request)


@gated(_authenticate_first)
@marked(access=Access.ADMIN, statuses=(401, 413))
async def authenticate(request: Request) -> Principal:
    """The caller, as `_authenticate_first` found it before the body was parsed (routes of
    `AuthFirstRoute` routers); 401 on a route that did not run it."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise _unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    return principal


Caller = Annotated[Principal, Depends(authenticate)]

__all__ = ["AuthConfig", "Caller", "Principal", "SecretFileError", "ensure_admin_token"]
