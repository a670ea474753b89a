"""`kumulus vm ssh` files the VM's host key, as the backend reports it, under `vm-<id>` in
its own known_hosts (~/.config/kumulus/known_hosts, 0600) and has ssh check it from the
first connection on (StrictHostKeyChecking=yes); a VM without a known key falls back to
accept-new with a warning; a key that is not exactly one key is refused before ssh runs.

The backend and `ssh` are the fakes of test_cli_ssh_refuses_hostile_host.py; the real
`ssh -G` (which prints the configuration it would connect with) checks that the options
mean what they should, quoting and '%' in the path included."""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backend.test_cli_ssh_refuses_hostile_host import Env, FakeBackend

HOST_KEY_1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjcamrCiAFWxBb6xGbJXN1f2NCHHmqZY3l0NObEFIou"
HOST_KEY_2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGYvr7BMgYK5KZ8s5tJkIyVJg6lP0ZQY8KZy4R6UgmrZ"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    # A config directory with a space and a '%', which ssh would otherwise split or expand.
    base = tmp_path / "my %d dir"
    base.mkdir()
    with FakeBackend() as backend:
        yield Env(base, backend)


def _known_hosts(env: Env) -> Path:
    return env.home / "kumulus" / "known_hosts"


def _option(argv: list[str], name: str) -> str:
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-o"]
    [value] = [v.split("=", 1)[1] for v in values if v.split("=", 1)[0] == name]
    return value


def test_the_key_is_filed_under_the_vm_alias_and_checked_strictly(env: Env) -> None:
    out = env.kumulus("vm", "ssh", env.vm(hostKey=HOST_KEY_1))
    assert out.returncode == 0, out.stderr
    argv = env.recorded()
    assert argv is not None and argv[-2:] == ["--", "dev@203.0.113.5"]
    assert _option(argv, "StrictHostKeyChecking") == "yes"
    assert _option(argv, "HostKeyAlias") == "vm-v1"
    assert _option(argv, "GlobalKnownHostsFile") == "none"
    path = _known_hosts(env)
    assert path.read_text() == f"vm-v1 {HOST_KEY_1}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "warning" not in out.stderr

    # Another VM: one line per VM.
    env.backend.vms["v2"] = {**env.backend.vms["v1"], "id": "v2", "hostKey": HOST_KEY_2}
    assert env.kumulus("vm", "ssh", "v2").returncode == 0
    assert path.read_text() == f"vm-v1 {HOST_KEY_1}\nvm-v2 {HOST_KEY_2}\n"

    # The backend's word replaces what the file had, and the developer is told.
    env.backend.vms["v1"]["hostKey"] = HOST_KEY_2
    out = env.kumulus("vm", "ssh", "v1")
    assert out.returncode == 0, out.stderr
    assert "reports a different host key for VM v1" in out.stderr
    assert path.read_text() == f"vm-v2 {HOST_KEY_2}\nvm-v1 {HOST_KEY_2}\n"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")
def test_real_ssh_reads_the_options_as_meant(env: Env) -> None:
    assert env.kumulus("vm", "ssh", env.vm(hostKey=HOST_KEY_1)).returncode == 0
    argv = env.recorded()
    assert argv is not None
    config = subprocess.run(
        ["ssh", "-G", *argv], capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    assert "stricthostkeychecking true" in config
    assert "hostkeyalias vm-v1" in config
    assert f"userknownhostsfile {_known_hosts(env)}" in config
    assert "port 2201" in config and "hostname 203.0.113.5" in config


def test_a_vm_without_a_known_key_falls_back_to_accept_new_with_a_warning(env: Env) -> None:
    out = env.kumulus("vm", "ssh", env.vm(hostKey=None))
    assert out.returncode == 0, out.stderr
    assert "the backend has no host key for VM v1" in out.stderr
    argv = env.recorded()
    assert argv is not None
    assert _option(argv, "StrictHostKeyChecking") == "accept-new"
    assert _option(argv, "HostKeyAlias") == "vm-v1"
    assert not _known_hosts(env).exists()  # ssh files what it is shown, under the alias


def test_a_key_or_id_that_is_not_exactly_that_is_refused_before_ssh(env: Env) -> None:
    _known_hosts(env).write_text(f"vm-v2 {HOST_KEY_2}\n")
    hostile: list[dict[str, object]] = [
        {"hostKey": f"{HOST_KEY_1}\nvm-v2 {HOST_KEY_1}"},
        {"hostKey": f"{HOST_KEY_1} comment"},
        {"hostKey": HOST_KEY_1, "id": "v1\nvm-v2"},
    ]
    for over in hostile:
        out = env.kumulus("vm", "ssh", env.vm(**over))
        assert out.returncode == 1, over
        assert "refusing to run ssh for VM v1" in out.stderr and "Traceback" not in out.stderr
        assert env.recorded() is None
        assert _known_hosts(env).read_text() == f"vm-v2 {HOST_KEY_2}\n"
