"""A VM's SSH host key as the platform passes it on: from the agent that made it, through the
backend, to the developer's known_hosts.

The key reaches the backend in an agent's answer, so it is provider-controlled text and it
ends up as a line of a file that ssh reads. It is accepted only as exactly one public key,
`<type> <base64>` with one space and nothing else (no comment, no options, no second line),
whose data parses as a key of that type; its fingerprint is always computed here from the
key, never taken from whoever sent it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from kumulus.core.sshkeys import SSHKeyError, parse_ssh_public_key

# A 16,384-bit RSA key is about 2,800 characters of base64; nothing longer is a host key.
MAX_HOST_KEY = 4096
_HOST_KEY_RE = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)"
    r" [A-Za-z0-9+/]+={0,2}"
)
_ALIAS_ID_RE = re.compile(r"[a-z0-9]{1,32}")


class HostKeyError(ValueError):
    """Raised for text that is not exactly one acceptable SSH public host key."""


@dataclass(frozen=True)
class HostKey:
    line: str  # "<type> <base64>", as known_hosts and `ssh-keyscan` write it
    fingerprint: str  # "SHA256:...", exactly as `ssh-keygen -lf` prints it


def parse_host_key(text: object) -> HostKey:
    """The host key in `text`, or HostKeyError. Error messages never repeat the text."""
    if not isinstance(text, str):
        raise HostKeyError("host key must be a string")
    if len(text) > MAX_HOST_KEY:
        raise HostKeyError(f"host key is longer than {MAX_HOST_KEY} characters")
    if not _HOST_KEY_RE.fullmatch(text):
        raise HostKeyError(
            "host key must be one line '<type> <base64>' of an ed25519, ecdsa or rsa key, "
            "nothing else"
        )
    try:
        parsed = parse_ssh_public_key(text)
    except SSHKeyError as exc:
        raise HostKeyError(f"host key is not a valid public key: {exc}") from exc
    return HostKey(line=text, fingerprint=parsed.fingerprint)


def _host_key_line(value: str) -> str:
    return parse_host_key(value).line


# For schemas that carry a host key from another party.
HostKeyLine = Annotated[
    str,
    Field(max_length=MAX_HOST_KEY, examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI..."]),
    AfterValidator(_host_key_line),
]


def host_key_alias(vm_id: object) -> str:
    """The name a VM's host key is filed under in known_hosts (ssh's HostKeyAlias):
    `vm-<id>`. Not `[host]:port`: ports are reused by later VMs, so two VMs would collide.
    ValueError for an id that is not 1-32 lowercase letters and digits (it becomes a word
    of an ssh option and a known_hosts line)."""
    if not isinstance(vm_id, str) or not _ALIAS_ID_RE.fullmatch(vm_id):
        raise ValueError("invalid VM id for a host key alias")
    return f"vm-{vm_id}"
