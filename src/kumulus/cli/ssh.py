"""The ssh command for a VM, built here from the VM's validated parts, never from a
command line the server sent; its host key checked against what its host reported."""

from __future__ import annotations

from pathlib import Path

from kumulus import known_hosts
from kumulus.backend.schemas import VMOut
from kumulus.cli.output import printable
from kumulus.core.hostkeys import HostKeyError, host_key_alias, parse_host_key
from kumulus.core.hostnames import ssh_argv, ssh_command


def _parts(vm: VMOut) -> tuple[str, object, str]:
    if not isinstance(vm.ssh_host, str) or not isinstance(vm.username, str):
        raise ValueError("the VM answer has no valid sshHost or username")
    return vm.ssh_host, vm.ssh_port, vm.username


def argv(vm: VMOut, known: Path | None = None) -> list[str]:
    """The ssh argv for a VM answer, built from its sshHost, sshPort and username, each
    validated here again (ValueError otherwise). The server's sshCommand is never used: a
    host's address comes from its provider, and a string split into argv could carry
    options such as -oProxyCommand that run commands on this machine.

    With `known` (a known_hosts file), ssh checks the VM's host key against `vm-<id>` in
    that file: the VM's hostKey, filed there first (StrictHostKeyChecking=yes), or, when
    the answer has none, whatever key ssh is shown first (accept-new)."""
    args = ssh_argv(*_parts(vm))
    if known is None:
        return args
    alias = host_key_alias(vm.id)
    key = vm.host_key
    if key is not None:
        try:
            key = parse_host_key(key).line
        except HostKeyError as exc:
            raise ValueError(f"the backend's host key for the VM is not valid: {exc}") from exc
    options = known_hosts.ssh_options(known, alias, verified=key is not None)
    destination = args.index("--")
    return args[:destination] + options + args[destination:]


def line(vm: VMOut) -> tuple[str | None, str | None]:
    """(ssh line to show, None) or (None, why not) for a VM answer, built locally from
    validated parts like `argv`; (None, None) while the VM has no address."""
    if vm.ssh_problem:
        return None, printable(vm.ssh_problem)
    if not vm.ssh_host or vm.ssh_port is None:
        return None, None
    try:
        return ssh_command(*_parts(vm)), None
    except ValueError as exc:
        return None, f"refused an invalid ssh address from the backend: {exc}"
