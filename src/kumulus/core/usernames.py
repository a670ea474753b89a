"""Linux username rules for the account created inside a VM."""

from __future__ import annotations

import re

# Portable subset of useradd's rules (lowercase, starts with a letter or '_', max 32).
_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Users and groups that exist in the base images (Debian and Ubuntu) or carry privilege;
# `useradd --user-group` would fail on a clash, and some would grant access by name.
RESERVED_USERNAMES = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "sshd",
        "messagebus",
        "ubuntu",
        "debian",
        "admin",
        "adm",
        "sudo",
        "wheel",
        "staff",
        "users",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "fax",
        "voice",
        "cdrom",
        "floppy",
        "tape",
        "audio",
        "dip",
        "video",
        "plugdev",
        "netdev",
        "operator",
        "src",
        "shadow",
        "utmp",
        "sasl",
        "scanner",
        "lxd",
        "docker",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-journal",
        "crontab",
        "input",
        "kvm",
        "render",
        "sgx",
        "ssh",
        "postgres",
        "kumulus",
        "halt",
        "shutdown",
        "ftp",
        "guest",
    }
)


class UsernameError(ValueError):
    """Raised for a username that cannot be created safely inside a VM."""


def validate_username(name: str) -> str:
    """Return `name` if it is a valid, non-reserved Linux username, else raise UsernameError."""
    if not isinstance(name, str) or not _USERNAME_RE.fullmatch(name):
        raise UsernameError(
            "invalid username: use 1-32 characters, lowercase letters, digits, '_' or '-', "
            "starting with a letter or '_'"
        )
    if name in RESERVED_USERNAMES or name.startswith("systemd-"):
        raise UsernameError(f"username {name!r} is reserved; choose another")
    return name
