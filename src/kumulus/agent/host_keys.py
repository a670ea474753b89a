"""SSH host keys the agent makes for its VMs, so it can tell the developer which key their
VM will show before the first connection (no blind trust on first use).

The private key exists outside the VM only in this process's memory, between `generate`
and the runtime writing it into the VM's own filesystem before its first start; the agent
never writes it anywhere else. It survives stop/start, agent and engine restarts with the
VM's files; the public key is kept on the container (a label), from which the agent
answers after a restart."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


@dataclass(frozen=True)
class HostKeyPair:
    public_line: str  # "ssh-ed25519 <base64>"
    # OpenSSH PEM, unencrypted (sshd reads it at every start). Kept out of repr: no log or
    # traceback prints it.
    private_openssh: bytes = field(repr=False)


def generate() -> HostKeyPair:
    """A new ed25519 host key (the only type the VM's sshd is configured for)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    return HostKeyPair(public_line=public, private_openssh=private)
