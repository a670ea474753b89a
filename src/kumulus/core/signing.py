"""sr25519 signatures for everything that crosses the network between Kumulus parts.

Two machine shapes share one freshness and replay check:
- an **envelope** (heartbeats with health stats, host registration, address changes): JSON
  object with address, timestamp, nonce, payload and signature, verifiable by anyone who knows
  the address;
- a **signed request** (backend -> agent): HTTP headers over method, path, timestamp, nonce
  and the SHA-256 of the body;
- a **signed answer** (agent -> backend): one header over the answer's status code, the
  SHA-256 of its body and the nonce of the request it answers (no freshness check of its
  own: the nonce was made for that one request).

A signature is accepted once: within `max_skew` seconds of now, with a nonce not seen before
for that signer. Keys are the same sr25519 keys polkadot.js and Talisman derive from a wallet
mnemonic (substrate-interface), so a provider's stats are signed by the address they own.

Domain separation: every signed message starts with its kind's `Domain` tag, and the verifier
names the kind it expects, so a signature made for one kind is never valid as another.
Machine messages are verified on their exact bytes (sr25519 directly). substrate-interface's
`Keypair.verify` also accepts a signature over `<Bytes>` + message + `</Bytes>`, the wrapping
browser extensions apply in signRaw; that form is accepted only for texts a person signs in
a wallet (wallet-link and delegation challenges), never for envelopes or requests: otherwise
any text a wallet was talked into signing that parses as an envelope would be one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import sr25519
from pydantic import BaseModel, Field
from substrateinterface import Keypair, KeypairType

SS58_FORMAT = 42
DEFAULT_MAX_SKEW = 60.0


class Domain(StrEnum):
    """The kind of a signed message, and the tag its signed bytes start with."""

    HEARTBEAT = "kumulus/heartbeat/v1"  # envelope: health stats + VM inventory, every interval
    HOST_REGISTRATION = "kumulus/host-registration/v1"  # envelope: a host joins with a token
    HOST_IP = "kumulus/host-ip/v1"  # envelope: a host's public address changes
    REQUEST = "kumulus/request/v1"  # HTTP request headers: backend -> agent
    ANSWER = "kumulus/answer/v1"  # HTTP answer header: agent -> backend, bound to a request
    WALLET_LINK = "kumulus/wallet-link/v1"  # text a person signs in a wallet
    DELEGATION = "kumulus/delegation/v1"  # text a person signs in a wallet (host key, future)


ENVELOPE_DOMAINS = frozenset({Domain.HEARTBEAT, Domain.HOST_REGISTRATION, Domain.HOST_IP})
# Texts signed by people through wallet extensions, which wrap what they sign in <Bytes>.
WALLET_TEXT_DOMAINS = frozenset({Domain.WALLET_LINK, Domain.DELEGATION})

HDR_ADDRESS = "X-Kumulus-Address"
HDR_TIMESTAMP = "X-Kumulus-Timestamp"
HDR_NONCE = "X-Kumulus-Nonce"
HDR_SIGNATURE = "X-Kumulus-Signature"
HDR_AUDIENCE = "X-Kumulus-Audience"  # the agent (host id) a request is meant for
HDR_ANSWER_SIGNATURE = "X-Kumulus-Answer-Signature"  # the agent's signature of its answer


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


def create_secret_file(path: Path, value: str) -> bool:
    """Create `path` (mode 0600, complete from the first byte) unless it exists; True if
    this call created it. Never replaces a file: processes racing to make the same secret
    all end up reading the one that was linked first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


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
        return _public_key(address)
    except Exception as exc:
        raise SignatureError("address is not a valid ss58 address") from exc


@functools.lru_cache(maxsize=4096)
def _public_key(address: str) -> bytes:
    # Cached: every heartbeat decodes its signer's address, and the signers are few.
    # Failures raise, so they are never cached.
    kp = Keypair(ss58_address=address, crypto_type=KeypairType.SR25519)
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


_NONCE = re.compile(r"[0-9a-f]{16,64}")  # one C call per envelope, not a loop per character


def _check_nonce(nonce: str) -> None:
    if _NONCE.fullmatch(nonce) is None:
        raise SignatureError("nonce must be 16-64 lowercase hex characters")


def _signature_bytes(signature_hex: str) -> bytes:
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
    except ValueError as exc:
        raise SignatureError("signature is not hex") from exc
    if len(signature) != 64:
        raise SignatureError("signature must be 64 bytes")
    return signature


def _valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        return bool(sr25519.verify(signature, message, public_key))
    except ValueError:  # not a schnorrkel signature (marker bit), or a malformed point
        return False


def _verify_exact(address: str, message: bytes, signature_hex: str) -> None:
    """Accept a signature by `address` over exactly `message`, and nothing else (not the
    `<Bytes>`-wrapped form); raise SignatureError otherwise. `message` must already start
    with its Domain tag: envelopes and signed requests build theirs below."""
    public_key = public_key_of(address)
    if not _valid(public_key, message, _signature_bytes(signature_hex)):
        raise SignatureError("bad signature")


# --- envelopes ------------------------------------------------------------------------------


class SignedEnvelope(BaseModel):
    """A payload signed by `address`. JSON-serialisable as is."""

    address: str = Field(max_length=64)
    timestamp: float
    nonce: str = Field(max_length=64)
    payload: dict[str, Any]
    signature: str = Field(max_length=200)


def _envelope_domain(domain: Domain) -> bytes:
    if domain not in ENVELOPE_DOMAINS:
        raise ValueError(f"{domain} is not an envelope kind")
    return domain.value.encode() + b"\n"


def _envelope_message(
    domain: Domain, address: str, timestamp: float, nonce: str, payload: Mapping[str, Any]
) -> bytes:
    body = json.dumps(
        {"address": address, "timestamp": timestamp, "nonce": nonce, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return _envelope_domain(domain) + body.encode()


def envelope_message(envelope: SignedEnvelope, domain: Domain) -> bytes:
    """The exact bytes a signature of `envelope` as kind `domain` covers; ValueError when
    the payload has no canonical JSON form (NaN, Infinity)."""
    return _envelope_message(
        domain, envelope.address, envelope.timestamp, envelope.nonce, envelope.payload
    )


def sign_envelope(
    keypair: Keypair, payload: Mapping[str, Any], *, domain: Domain, now: float | None = None
) -> SignedEnvelope:
    """Sign `payload` as an envelope of kind `domain` (one of ENVELOPE_DOMAINS)."""
    timestamp = round(time.time() if now is None else now, 3)
    nonce = secrets.token_hex(16)
    address = str(keypair.ss58_address)
    message = _envelope_message(domain, address, timestamp, nonce, payload)
    signature = "0x" + bytes(keypair.sign(message)).hex()
    return SignedEnvelope(
        address=address,
        timestamp=timestamp,
        nonce=nonce,
        payload=dict(payload),
        signature=signature,
    )


def payload_size(envelope: SignedEnvelope, domain: Domain, message: bytes) -> int:
    """The length of `envelope`'s payload as compact JSON (`json.dumps(payload,
    separators=(",", ":"))`), read off `message`, its canonical message as kind `domain`
    (envelope_message): that message holds the payload's JSON with sorted keys, which is
    as long as the compact form, so the payload need not be serialised a second time."""
    frame = _envelope_message(domain, envelope.address, envelope.timestamp, envelope.nonce, {})
    return len(message) - len(frame) + len(b"{}")


def verify_envelope(
    envelope: SignedEnvelope,
    nonces: NonceStore,
    *,
    domain: Domain,
    expected_address: str | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the payload of a valid, fresh, first-seen envelope of kind `domain`, signed
    over its exact bytes; raise SignatureError otherwise (an envelope of another kind, or a
    signature over the `<Bytes>`-wrapped message, is a bad signature)."""
    verify_envelope_message(
        envelope,
        nonces,
        domain=domain,
        expected_address=expected_address,
        max_skew=max_skew,
        now=now,
    )
    return envelope.payload


def verify_envelope_message(
    envelope: SignedEnvelope,
    nonces: NonceStore,
    *,
    domain: Domain,
    expected_address: str | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    now: float | None = None,
) -> bytes:
    """verify_envelope, returning the canonical message the signature covers (what
    payload_size reads) instead of the payload."""
    now = time.time() if now is None else now
    if expected_address is not None and envelope.address != expected_address:
        raise SignatureError("envelope is signed by an unexpected address")
    _check_nonce(envelope.nonce)
    _check_fresh(envelope.timestamp, now, max_skew)
    try:
        message = envelope_message(envelope, domain)
    except ValueError as exc:  # NaN/Infinity in the payload: never signed by us
        raise SignatureError("payload is not canonical JSON") from exc
    _verify_exact(envelope.address, message, envelope.signature)
    # Only a valid signature may consume a nonce, or anyone could burn others' nonces.
    if not nonces.check_and_store(envelope.address, envelope.nonce, now):
        raise SignatureError("replayed envelope (nonce already used)")
    return message


# --- signed HTTP requests -------------------------------------------------------------------


def _request_message(
    method: str, target: str, audience: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = [method.upper(), target, audience, timestamp, nonce, digest]
    return Domain.REQUEST.value.encode() + b"\n" + "\n".join(parts).encode()


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
    """Accept a request signed by `expected_address` for `audience` over the exact request
    message (never its `<Bytes>`-wrapped form), fresh (and not older than `not_before`) and
    never seen; raise SignatureError otherwise."""
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
    message = _request_message(method, target, audience, timestamp, nonce, body)
    _verify_exact(address, message, signature)
    if not nonces.check_and_store(address, nonce, now):
        raise SignatureError("replayed request (nonce already used)")


# --- signed HTTP answers (agent -> backend) -------------------------------------------------


def _answer_message(status: int, body: bytes, request_nonce: str) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return Domain.ANSWER.value.encode() + b"\n" + f"{status}\n{request_nonce}\n{digest}".encode()


def sign_answer(keypair: Keypair, status: int, body: bytes, request_nonce: str) -> str:
    """The signature (0x hex) of an answer to the signed request whose nonce is
    `request_nonce`: over its status code and the SHA-256 of its exact body bytes."""
    return "0x" + bytes(keypair.sign(_answer_message(status, body, request_nonce))).hex()


def verify_answer(
    address: str, status: int, body: bytes, request_nonce: str, signature_hex: str
) -> None:
    """Accept an answer signed by `address` over exactly this status, body and the nonce of
    the request it answers; raise SignatureError otherwise. Freshness and replay come from
    the nonce: the caller made it for this one request, so an answer to another request
    (or a replayed one) does not verify."""
    if not signature_hex:
        raise SignatureError("the answer is not signed")
    _check_nonce(request_nonce)
    _verify_exact(address, _answer_message(status, body, request_nonce), signature_hex)


# --- texts people sign in a wallet (polkadot.js / Talisman signRaw) --------------------------


def wallet_text(domain: Domain, text: str) -> str:
    """The message a person is asked to sign: `text` behind its domain tag, readable in the
    wallet's signing prompt."""
    if domain not in WALLET_TEXT_DOMAINS:
        raise ValueError(f"{domain} is not signed by people in a wallet")
    return f"{domain.value}: {text}"


def _verify_wallet_text(domain: Domain, address: str, message: str, signature_hex: str) -> None:
    if not message.startswith(f"{domain.value}: "):
        raise SignatureError(f"not a {domain.value} message")
    public_key = public_key_of(address)
    signature = _signature_bytes(signature_hex)
    raw = message.encode()
    if not (
        _valid(public_key, raw, signature)
        or _valid(public_key, b"<Bytes>" + raw + b"</Bytes>", signature)
    ):
        raise SignatureError("bad signature")


def verify_wallet_link(address: str, message: str, signature_hex: str) -> None:
    """Accept a signature by `address` of a wallet-link challenge (`message`, built by
    `wallet_text(Domain.WALLET_LINK, ...)`), made over the raw text or over the
    `<Bytes>...</Bytes>` wrapping polkadot.js and Talisman apply in signRaw; raise
    SignatureError otherwise."""
    _verify_wallet_text(Domain.WALLET_LINK, address, message, signature_hex)


def verify_delegation(address: str, message: str, signature_hex: str) -> None:
    """Accept a wallet's signature of a delegation (`message`, built by
    `wallet_text(Domain.DELEGATION, ...)`), raw or `<Bytes>`-wrapped as with wallet links:
    the provider signs it in a browser extension. What the text says (its host, key and
    times) is checked by the caller (backend/host_keys.delegate)."""
    _verify_wallet_text(Domain.DELEGATION, address, message, signature_hex)
