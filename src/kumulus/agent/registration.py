"""This agent's registration with a backend: made once by `kumulus agent register`, read by
the stats collector on every round (so registering a running agent needs no restart)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from substrateinterface import Keypair

from kumulus import __version__
from kumulus.core.host_tokens import backend_address_in
from kumulus.core.hostnames import HostnameError, validate_public_host
from kumulus.core.http import error_detail
from kumulus.core.signing import Domain, SignatureError, public_key_of, sign_envelope

REGISTRATION_FILE = "registration.json"
log = logging.getLogger(__name__)


class Registration(BaseModel):
    backend_url: str
    host_id: str
    backend_address: str


class RegistrationError(RuntimeError):
    pass


def read_pinned_backend(path: Path) -> str | None:
    """The ss58 address of the backend this agent trusts, if one was pinned. Whoever can
    write this file controls the agent: a file others may write (or not root's/ours) is
    ignored."""
    try:
        st = path.stat()
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_uid not in (0, os.getuid()):
        log.error("ignoring %s: writable by others or foreign owner", path)
        return None
    return value or None


def pin_backend(path: Path, address: str) -> None:
    """Pin (atomically) the backend address this agent trusts for signed calls."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(address + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def load_registration(state_dir: Path) -> Registration | None:
    try:
        return Registration.model_validate_json((state_dir / REGISTRATION_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def register(
    *,
    state_dir: Path,
    backend_key_file: Path,
    keypair: Keypair,
    backend_url: str,
    provider_token: str,
    api_url: str,
    public_ip: str,
    host_info: dict[str, Any],
    http: httpx.Client | None = None,
    backend_address: str | None = None,
) -> Registration:
    """Register with the backend (signed by this host's own key), then pin the backend's
    key so the agent accepts calls signed by it, and only by it. The key pinned is the one
    the one-time token carries (or `backend_address`, given out of band), never one taken
    from the answer alone: an answer naming another key is a RegistrationError and nothing
    is pinned. `public_ip` must be an IP address or a DNS name. RegistrationError before
    anything is sent when either is missing or malformed."""
    try:
        public_ip = validate_public_host(public_ip)
    except HostnameError as exc:
        raise RegistrationError(f"cannot register: {exc}") from exc
    if backend_address is not None:
        try:
            public_key_of(backend_address)
        except SignatureError as exc:
            raise RegistrationError(f"cannot register: backend address: {exc.reason}") from exc
    expected = backend_address or backend_address_in(provider_token)
    if expected is None:
        raise RegistrationError(
            "cannot register: the token carries no backend key; create a new token in the "
            "provider console (or give the backend's address, shown at /healthz, out of band)"
        )
    payload = {
        "kind": "register",
        "providerToken": provider_token,
        "apiUrl": api_url,
        "publicIp": public_ip,
        "capacity": host_info["capacity"],
        "diskQuota": host_info["diskQuotaSupported"],
        "isolation": host_info.get("isolation"),
        "agentVersion": __version__,
    }
    envelope = sign_envelope(keypair, payload, domain=Domain.HOST_REGISTRATION)
    client = http or httpx.Client(timeout=30)
    url = backend_url.rstrip("/") + "/v1/hosts/register"
    try:
        resp = client.post(url, json=envelope.model_dump())
    except httpx.HTTPError as exc:
        raise RegistrationError(f"cannot reach the backend at {backend_url}: {exc}") from exc
    if resp.status_code != 201:
        raise RegistrationError(
            f"backend refused the registration ({resp.status_code}): {error_detail(resp)}"
        )
    body = resp.json()
    if body.get("backendAddress") != expected:
        raise RegistrationError(
            "the backend answered with a key other than the one in the token: "
            "nothing pinned (is something between this host and the backend?)"
        )
    reg = Registration(
        backend_url=backend_url.rstrip("/"),
        host_id=body["hostId"],
        backend_address=expected,
    )
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pin_backend(backend_key_file, reg.backend_address)
    tmp = state_dir / (REGISTRATION_FILE + ".tmp")
    tmp.write_text(json.dumps(reg.model_dump(), indent=2) + "\n")
    tmp.replace(state_dir / REGISTRATION_FILE)
    return reg
