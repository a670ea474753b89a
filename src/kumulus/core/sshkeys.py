"""Parsing of OpenSSH public keys as developers paste them (one line of an authorized_keys)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

MIN_RSA_BITS = 2048
_ALLOWED_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
}
_MAX_LEN = 16_384


class SSHKeyError(ValueError):
    """Raised for text that is not one acceptable OpenSSH public key."""


@dataclass(frozen=True)
class SSHPublicKey:
    """A parsed key. `line` is the normalised authorized_keys line (type, base64, comment)."""

    key_type: str
    line: str
    fingerprint: str  # "SHA256:..." as `ssh-keygen -lf` prints it
    bits: int


def _clean_comment(parts: list[str]) -> str:
    comment = " ".join(parts)
    # The comment lands in authorized_keys; keep it to harmless printable ASCII.
    return "".join(ch for ch in comment if 32 <= ord(ch) < 127)[:200]


def parse_ssh_public_key(text: str) -> SSHPublicKey:
    """Parse one OpenSSH public key line: ed25519, ecdsa or rsa >= 2048 bits.

    Options prefixes (`command="..."`), several keys, private keys and weak keys are refused.
    """
    if not isinstance(text, str) or not text.strip():
        raise SSHKeyError("SSH key is empty: paste the one line of your .pub file")
    if len(text) > _MAX_LEN:
        raise SSHKeyError("SSH key is too long")
    stripped = text.strip()
    if "PRIVATE KEY" in stripped:
        raise SSHKeyError("this is a private key: paste the public key (the .pub file) instead")
    if "\n" in stripped or "\r" in stripped or "\x00" in stripped:
        raise SSHKeyError("SSH key must be a single line")
    parts = stripped.split()
    if len(parts) < 2:
        raise SSHKeyError("SSH key must look like 'ssh-ed25519 AAAA... comment'")
    key_type, blob_b64 = parts[0], parts[1]
    if key_type not in _ALLOWED_TYPES:
        raise SSHKeyError(
            f"unsupported SSH key type {key_type[:40]!r}: use ssh-ed25519, ecdsa-sha2-nistp* "
            f"or ssh-rsa (>= {MIN_RSA_BITS} bits)"
        )
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SSHKeyError("SSH key data is not valid base64") from exc
    try:
        key = load_ssh_public_key(f"{key_type} {blob_b64}".encode())
    except (ValueError, TypeError) as exc:
        raise SSHKeyError("SSH key data is corrupt or does not match its type") from exc
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if bits < MIN_RSA_BITS:
            raise SSHKeyError(f"RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
    elif isinstance(key, ed25519.Ed25519PublicKey):
        bits = 256
    elif isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.curve.key_size
    else:  # pragma: no cover - the type list above excludes the rest
        raise SSHKeyError("unsupported SSH key type")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    comment = _clean_comment(parts[2:])
    line = f"{key_type} {blob_b64}" + (f" {comment}" if comment else "")
    return SSHPublicKey(key_type=key_type, line=line, fingerprint=f"SHA256:{digest}", bits=bits)
