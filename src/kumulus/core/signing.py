"""sr25519 signatures for everything that crosses the network between Kumulus parts.

Two shapes share one freshness and replay check:
- an **envelope** (health stats, registrations): JSON object with address, timestamp, nonce,
  payload and signature, verifiable by anyone who knows the address;
- a **signed request** (backend -> agent): HTTP headers over method, path, timestamp, nonce
  and the SHA-256 of the body.

A signature is accepted once: within `max_skew` seconds of now, with a nonce not seen before
for that signer. Keys are the same sr25519 keys polkadot.js and Talisman derive from a wallet
mnemonic (substrate-interface), so a provider's stats are signed by the address they own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field
from substrateinterface import Keypair, KeypairType

SS58_FORMAT = 42
DEFAULT_MAX_SKEW = 60.0
_ENVELOPE_DOMAIN = b"kumulus-envelope-v1\n"
_REQUEST_DOMAIN = b"kumulus-request-v1\n"

HDR_ADDRESS = "X-Kumulus-Address"
HDR_TIMESTAMP = "X-Kumulus-Timestamp"
HDR_NONCE = "X-Kumulus-Nonce"
HDR_SIGNATURE = "X-Kumulus-Signature"
HDR_AUDIENCE = "X-Kumulus-Audience"  # the agent (host id) a request is meant for


class SignatureError(ValueError):
    """A signed message was refused. `reason` is safe to show to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecretFileError(ValueError):
    """A secret file is missing, empty, or readable by other users."""


def read_secret_file(path: Path) -> str:
    """Read a secret that must be owner-only (no group/other permission bits)."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise SecretFileError(f"secret file {path} does not exist") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"secret file {path} is readable by other users; run: chmod 600 {path}"
        )
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretFileError(f"secret file {path} is empty")
    return value


def write_secret_file(path: Path, value: str) -> None:
    """Create or replace `path` with mode 0600 from the first byte (never briefly readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def keypair_from_mnemonic(mnemonic: str) -> Keypair:
    """The wallet's sr25519 keypair, the same address polkadot.js/Talisman show."""
    try:
        return Keypair.create_from_mnemonic(
            mnemonic, ss58_format=SS58_FORMAT, crypto_type=KeypairType.SR25519
        )
    except Exception:
        # Never include the mnemonic, nor chain the library's error (which may echo it).
        raise SecretFileError("the wallet mnemonic is not a valid BIP-39 phrase") from None


def load_keypair(mnemonic_file: Path) -> Keypair:
    """Load the provider's (or backend's) sr25519 keypair from a 0600 mnemonic file."""
    return keypair_from_mnemonic(read_secret_file(mnemonic_file))


def new_mnemonic() -> str:
    return str(Keypair.generate_mnemonic(words=12))


def public_key_of(address: str) -> bytes:
    """Decode an ss58 address; raise SignatureError when it is not one."""
    try:
        kp = Keypair(ss58_address=address, crypto_type=KeypairType.SR25519)
    except Exception as exc:
        raise SignatureError("address is not a valid ss58 address") from exc
    return bytes(kp.public_key)


class NonceStore(Protocol):
    """Where accepted (signer, nonce) pairs are remembered; `check_and_store` must be atomic."""

    def check_and_store(self, signer: str, nonce: str, now: float | None = None) -> bool: ...


class NonceCache:
    """Remembers (signer, nonce) pairs until their signatures could no longer be fresh.

    In-memory and per process: enough for one agent. The backend keeps its own in the database.
    """

    def __init__(self, ttl: float = 2 * DEFAULT_MAX_SKEW + 5) -> None:
        self._ttl = ttl
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def check_and_store(self, signer: str, nonce: str, now: float | None = None) -> bool:
        """Record the nonce; return False if it was already recorded (a replay)."""
        now = time.time() if now is None else now
        key = (signer, nonce)
        with self._lock:
            if now >= self._next_prune:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
                self._next_prune = now + self._ttl / 4
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = now + self._ttl
            return True


def _check_fresh(
    timestamp: float, now: float, max_skew: float, not_before: float | None = None
) -> None:
    if not math.isfinite(timestamp) or abs(now - timestamp) > max_skew:
        raise SignatureError(f"stale or future timestamp (allowed clock skew is {int(max_skew)} s)")
    # Nonces are remembered in memory: anything signed before this verifier started could
    # be a replay it cannot recognise, so it is refused.
    if not_before is not None and timestamp < not_before:
        raise SignatureError("signed before this service started; sign again")


def _check_nonce(nonce: str) -> None:
    if not (16 <= len(nonce) <= 64) or any(c not in "0123456789abcdef" for c in nonce):
        raise SignatureError("nonce must be 16-64 lowercase hex characters")


def _verify(address: str, message: bytes, signature_hex: str) -> None:
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
    except ValueError as exc:
        raise SignatureError("signature is not hex") from exc
    if len(signature) != 64:
        raise SignatureError("signature must be 64 bytes")
    try:
        kp = Keypair(ss58_address=address, crypto_type=KeypairType.SR25519)
        ok = kp.verify(message, signature)
    except Exception as exc:
        raise SignatureError("address is not a valid ss58 address") from exc
    if not ok:
        raise SignatureError("bad signature")


# --- envelopes ------------------------------------------------------------------------------


class SignedEnvelope(BaseModel):
    """A payload signed by `address`. JSON-serialisable as is."""

    address: str = Field(max_length=64)
    timestamp: float
    nonce: str = Field(max_length=64)
    payload: dict[str, Any]
    signature: str = Field(max_length=200)


def _envelope_message(
    address: str, timestamp: float, nonce: str, payload: Mapping[str, Any]
) -> bytes:
    body = json.dumps(
        {"address": address, "timestamp": timestamp, "nonce": nonce, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return _ENVELOPE_DOMAIN + body.encode()


def sign_envelope(
    keypair: Keypair, payload: Mapping[str, Any], now: float | None = None
) -> SignedEnvelope:
    timestamp = round(time.time() if now is None else now, 3)
    nonce = secrets.token_hex(16)
    address = str(keypair.ss58_address)
    message = _envelope_message(address, timestamp, nonce, payload)
    signature = "0x" + bytes(keypair.sign(message)).hex()
    return SignedEnvelope(
        address=address,
        timestamp=timestamp,
        nonce=nonce,
        payload=dict(payload),
        signature=signature,
    )


def verify_envelope(
    envelope: SignedEnvelope,
    nonces: NonceStore,
    *,
    expected_address: str | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the payload of a valid, fresh, first-seen envelope; raise SignatureError else."""
    now = time.time() if now is None else now
    if expected_address is not None and envelope.address != expected_address:
        raise SignatureError("envelope is signed by an unexpected address")
    _check_nonce(envelope.nonce)
    _check_fresh(envelope.timestamp, now, max_skew)
    try:
        message = _envelope_message(
            envelope.address, envelope.timestamp, envelope.nonce, envelope.payload
        )
    except ValueError as exc:  # NaN/Infinity in the payload: never signed by us
        raise SignatureError("payload is not canonical JSON") from exc
    _verify(envelope.address, message, envelope.signature)
    # Only a valid signature may consume a nonce, or anyone could burn others' nonces.
    if not nonces.check_and_store(envelope.address, envelope.nonce, now):
        raise SignatureError("replayed envelope (nonce already used)")
    return envelope.payload


# --- signed HTTP requests -------------------------------------------------------------------


def _request_message(
    method: str, target: str, audience: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = [method.upper(), target, audience, timestamp, nonce, digest]
    return _REQUEST_DOMAIN + "\n".join(parts).encode()


def sign_request(
    keypair: Keypair,
    method: str,
    target: str,
    body: bytes,
    *,
    audience: str,
    now: float | None = None,
) -> dict[str, str]:
    """Headers that authenticate one HTTP request to one agent. `target` is the path plus
    query string; `audience` the receiving agent's id, so a request captured on its way to
    one host cannot be replayed to another."""
    timestamp = f"{(time.time() if now is None else now):.3f}"
    nonce = secrets.token_hex(16)
    message = _request_message(method, target, audience, timestamp, nonce, body)
    signature = bytes(keypair.sign(message)).hex()
    return {
        HDR_AUDIENCE: audience,
        HDR_ADDRESS: str(keypair.ss58_address),
        HDR_TIMESTAMP: timestamp,
        HDR_NONCE: nonce,
        HDR_SIGNATURE: "0x" + signature,
    }


def verify_request(
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    nonces: NonceStore,
    *,
    expected_address: str,
    audience: str,
    max_skew: float = DEFAULT_MAX_SKEW,
    not_before: float | None = None,
    now: float | None = None,
) -> None:
    """Accept a request signed by `expected_address` for `audience`, fresh (and not older
    than `not_before`) and never seen; raise SignatureError otherwise."""
    now = time.time() if now is None else now
    if headers.get(HDR_AUDIENCE, "") != audience:
        raise SignatureError("request is addressed to another agent")
    address = headers.get(HDR_ADDRESS, "")
    timestamp = headers.get(HDR_TIMESTAMP, "")
    nonce = headers.get(HDR_NONCE, "")
    signature = headers.get(HDR_SIGNATURE, "")
    if not (address and timestamp and nonce and signature):
        raise SignatureError("missing signature headers")
    if address != expected_address:
        raise SignatureError("request is signed by a key this agent does not trust")
    _check_nonce(nonce)
    try:
        ts = float(timestamp)
    except ValueError as exc:
        raise SignatureError("timestamp is not a number") from exc
    _check_fresh(ts, now, max_skew, not_before)
    _verify(address, _request_message(method, target, audience, timestamp, nonce, body), signature)
    if not nonces.check_and_store(address, nonce, now):
        raise SignatureError("replayed request (nonce already used)")


# --- wallet signatures (polkadot.js / Talisman signRaw) --------------------------------------


def verify_wallet_signature(address: str, message: str, signature_hex: str) -> None:
    """Accept a signature of `message` by `address`, made over the raw bytes or over the
    `<Bytes>...</Bytes>` wrapping that polkadot.js and Talisman apply in signRaw."""
    try:
        _verify(address, message.encode(), signature_hex)
        return
    except SignatureError as exc:
        if exc.reason != "bad signature":
            raise
    _verify(address, b"<Bytes>" + message.encode() + b"</Bytes>", signature_hex)
