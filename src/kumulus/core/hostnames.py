"""Addresses developers ssh to, and the ssh command lines built from them.

A host's public address comes from its provider (registration, `POST /v1/hosts/ip`, the
agent's `ssh_public_host`) and ends up in a command a developer runs. So it is only ever
an IP address or a plain DNS name: nothing a shell or ssh could read as an option, a
second word or a proxy command. Every ssh line or argv Kumulus shows or runs is built here,
from parts validated here, never taken from another party as a string."""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Annotated

from pydantic import AfterValidator

from kumulus.core.usernames import UsernameError, validate_username

MAX_DNS_NAME = 253
# RFC 1123 label: letters, digits and '-', 1-63 characters, no '-' at either end.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Everything an IP address or a DNS name can contain; anything else is refused up front.
_ALLOWED_RE = re.compile(r"[A-Za-z0-9.:-]+")


class HostnameError(ValueError):
    """Raised for a value that is not exactly an IP address or a DNS name."""


def _shown(value: str) -> str:
    # repr escapes control characters, so a hostile value cannot drive a terminal.
    return repr(value if len(value) <= 64 else value[:64] + "...")


def validate_public_host(value: str) -> str:
    """Return `value` as an IPv4/IPv6 address (compressed form) or a DNS name (lowercase,
    one trailing dot removed); raise HostnameError for anything else.

    DNS names follow RFC 1123: at most 253 characters, at least two labels of 1-63
    letters, digits or '-', no label starting or ending with '-', a last label that is not
    all digits. IPv6 zone ids ('%eth0'), brackets, ports, 'user@', spaces, quotes and
    control characters are all refused: the result is safe as one word of an ssh command
    line, after '-p PORT USER@'."""
    if not isinstance(value, str) or not value:
        raise HostnameError("host address is empty: give an IP address or a DNS name")
    if not _ALLOWED_RE.fullmatch(value):
        raise HostnameError(
            f"invalid host address {_shown(value)}: only an IP address or a DNS name "
            "(letters, digits, '.', '-', and ':' in IPv6) is accepted"
        )
    if ":" in value:
        try:
            return ipaddress.IPv6Address(value).compressed
        except ValueError as exc:
            raise HostnameError(
                f"invalid host address {_shown(value)}: ':' only appears in an IPv6 "
                "address (without brackets or a port)"
            ) from exc
    try:
        return ipaddress.IPv4Address(value).compressed
    except ValueError:
        pass
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_DNS_NAME:
        raise HostnameError(
            f"invalid host address {_shown(value)}: a DNS name has 1-{MAX_DNS_NAME} characters"
        )
    labels = name.split(".")
    if len(labels) < 2:
        raise HostnameError(
            f"invalid host address {_shown(value)}: give an IP address or a full DNS name "
            "such as host.example.com"
        )
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise HostnameError(
                f"invalid host address {_shown(value)}: each part of a DNS name has 1-63 "
                "letters, digits or '-', and does not start or end with '-'"
            )
    if labels[-1].isdigit():
        raise HostnameError(
            f"invalid host address {_shown(value)}: neither an IPv4 address nor a DNS name "
            "(a DNS name does not end in a number)"
        )
    return name


# For request schemas: a valid public host, normalised as validate_public_host returns it.
PublicHost = Annotated[str, AfterValidator(validate_public_host)]


def validate_ssh_port(port: object) -> int:
    """Return `port` if it is an int in 1..65535 (bool excluded), else raise ValueError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"invalid SSH port {port!r}: must be a number from 1 to 65535")
    return port


def ssh_argv(host: str, port: object, username: str) -> list[str]:
    """The argv of `ssh` to log in as `username` on `host`:`port`, every part validated
    (HostnameError, UsernameError or ValueError otherwise): ["ssh", "-p", PORT, "--",
    "USER@HOST"]. IPv6 addresses go without brackets: after '-p' there is no port to tell
    apart, and OpenSSH resolves "user@[::1]" as the name "[::1]" (it strips brackets only
    in ssh:// URIs)."""
    checked_host = validate_public_host(host)
    checked_port = validate_ssh_port(port)
    checked_user = validate_username(username)
    # "--": whatever comes next is the destination, never an option.
    return ["ssh", "-p", str(checked_port), "--", f"{checked_user}@{checked_host}"]


def ssh_command(host: str, port: object, username: str) -> str:
    """The line to paste into a shell, `ssh -p PORT USER@HOST`, built from validated parts
    (same errors as ssh_argv) and shell-quoted part by part."""
    argv = ssh_argv(host, port, username)
    # No "--" here: it is noise for people, and a valid username never starts with '-'.
    shown = [argv[0], argv[1], argv[2], argv[4]]
    return " ".join(shlex.quote(part) for part in shown)


def ssh_problem(host: str | None, port: object, username: str) -> str | None:
    """Why the ssh address in these parts cannot be given out, or None when every part
    that is there is valid (a missing host or port is not a problem: not there yet). The
    message never repeats the host value: it may be hostile."""
    if not host:
        return None
    try:
        validate_public_host(host)
        if port is not None:
            validate_ssh_port(port)
        validate_username(username)
    except HostnameError:
        return (
            "the host's SSH address is not a valid IP address or DNS name, so it is not "
            "shown; the provider must fix it"
        )
    except UsernameError:
        return "the VM's username is not valid for ssh"
    except ValueError:
        return "the host's SSH port is not valid"
    return None
