"""The developer's own known_hosts file for Kumulus VMs, kept by `kumulus vm ssh`.

Each VM's host key is filed under `vm-<id>` (ssh's HostKeyAlias), not under `[ip]:port`:
a provider's ports are reused by later VMs, which would then collide with an old entry.
The keys come from the backend (which had them from each VM's agent, checked by
core/hostkeys.py) and are written before ssh runs, so ssh checks the very first connection
with StrictHostKeyChecking=yes. The file is separate from ~/.ssh/known_hosts so nothing
Kumulus writes touches the user's other hosts."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from kumulus.core.hostkeys import parse_host_key

_UNSAFE_IN_PATH = set("\"'\\#")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two `kumulus vm ssh` at once must not drop each other's entry.
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _entries_for(line: str, alias: str) -> bool:
    fields = line.split()
    return len(fields) >= 2 and alias in fields[0].split(",")


def remember(path: Path, alias: str, key_line: str) -> str | None:
    """File `key_line` (one host key, checked again here: ValueError otherwise) under
    `alias` in the known_hosts file at `path`, replacing whatever that alias had; create
    the file 0600 (its directory 0700) when missing. Return the key the alias had before
    when it was a different one (the caller warns), else None."""
    key = parse_host_key(key_line)
    if not alias or any(ch.isspace() or ch in ",#" or not ch.isprintable() for ch in alias):
        raise ValueError("invalid host key alias")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(path):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        previous = [" ".join(line.split()[1:3]) for line in lines if _entries_for(line, alias)]
        if previous == [key.line]:
            return None
        kept = [line for line in lines if not _entries_for(line, alias)]
        kept.append(f"{alias} {key.line}")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(kept) + "\n")
        os.replace(tmp, path)
        return next((old for old in previous if old != key.line), None)


def _config_value(path: Path) -> str:
    # ssh reads an -o value like a config line: quotes group words, and '%' starts a
    # token (UserKnownHostsFile is percent-expanded).
    text = str(path.absolute())
    if any(ch in _UNSAFE_IN_PATH or not ch.isprintable() for ch in text):
        raise ValueError(
            f"cannot pass {text!r} to ssh as a known_hosts file: set XDG_CONFIG_HOME to a "
            "path without quotes, backslashes, '#' or control characters"
        )
    return '"' + text.replace("%", "%%") + '"'


def ssh_options(path: Path, alias: str, *, verified: bool) -> list[str]:
    """ssh options that check the host against `alias` in the file at `path` only.
    `verified`: the key is filed there already, so anything else is refused
    (StrictHostKeyChecking=yes); otherwise ssh files the key it is shown on the first
    connection (accept-new) and refuses a different one after that."""
    return [
        "-o",
        f"UserKnownHostsFile={_config_value(path)}",
        "-o",
        "GlobalKnownHostsFile=none",
        "-o",
        f"HostKeyAlias={alias}",
        "-o",
        "StrictHostKeyChecking=" + ("yes" if verified else "accept-new"),
        # An entry ssh adds (accept-new) stays readable under its alias, and the provider's
        # address, shared by all the VMs of a host, is not checked as a host of its own.
        "-o",
        "HashKnownHosts=no",
        "-o",
        "CheckHostIP=no",
    ]
