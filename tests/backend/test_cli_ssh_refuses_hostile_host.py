"""`kumulus vm ssh` never runs a string from the server: it builds ssh's argv itself from
sshHost, sshPort and username, validated on this machine, and refuses anything else.

The backend here is a real HTTP server that answers like a compromised (or outdated)
backend would; `ssh` is a fake first on PATH that records its argv and, like the real one,
runs any ProxyCommand it is given, so an injection would leave the marker file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumulus import known_hosts
from tests.cli_runner import run_cli
from tests.json_server import JsonServer

FAKE_SSH = """#!{python}
import json, subprocess, sys
with open({record!r}, "w") as f:
    json.dump(sys.argv[1:], f)
args = sys.argv[1:]
for i, arg in enumerate(args):  # what real ssh does with a ProxyCommand: run it
    command = None
    if arg.startswith("-oProxyCommand="):
        command = arg.split("=", 1)[1]
    elif arg == "-o" and i + 1 < len(args) and args[i + 1].startswith("ProxyCommand="):
        command = args[i + 1].split("=", 1)[1]
    if command:
        subprocess.run(["/bin/sh", "-c", command], check=False)
"""


class FakeBackend(JsonServer):
    """GET /v1/vms, GET /v1/vms/{id}, GET /v1/ssh-keys, POST /v1/vms/quote and POST
    /v1/vms, from `vms`."""

    def __init__(self) -> None:
        self.vms: dict[str, dict[str, Any]] = {}
        super().__init__(self._answer)

    def _answer(self, method: str, target: str) -> tuple[int, Any]:
        path = target.split("?", 1)[0]  # lists are paged: ?limit=...
        missing = (404, {"detail": "no such thing", "code": "not_found"})
        if method == "POST" and path == "/v1/vms/quote":
            quote = {"pricePerHour": "1", "maxPricePerHour": "1.1", "symbol": "UNIT"}
            return 200, {**quote, "hostId": "h1"}
        if method == "POST":
            return (
                (201, next(iter(self.vms.values()))) if path == "/v1/vms" and self.vms else missing
            )
        if path == "/v1/vms":
            return 200, {"items": list(self.vms.values()), "next": None}
        if path == "/v1/ssh-keys":
            key = {"id": 1, "name": "k", "fingerprint": "SHA256:x", "publicKey": "ssh-ed25519 A",
                   "createdAt": "2026-01-01T00:00:00Z"}  # fmt: skip
            return 200, {"items": [key], "next": None}
        if path.startswith("/v1/vms/") and path[8:] in self.vms:
            return 200, self.vms[path[8:]]
        return missing


class Env:
    def __init__(self, tmp: Path, backend: FakeBackend) -> None:
        self.marker = tmp / "MARKER"
        self.record = tmp / "ssh-argv.json"
        self.home = tmp / "home"
        (self.home / "kumulus").mkdir(parents=True)
        (self.home / "kumulus" / "cli.json").write_text(
            json.dumps({"backend": backend.url, "token": "kmt_test"})
        )
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        ssh = bin_dir / "ssh"
        ssh.write_text(FAKE_SSH.format(python=sys.executable, record=str(self.record)))
        ssh.chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        self.backend = backend

    def vm(self, **over: Any) -> str:
        body = {
            "id": "v1",
            "name": "vm",
            "username": "dev",
            "actualState": "running",
            "intendedState": "running",
            "hostId": "h1",
            "sshHost": "203.0.113.5",
            "sshPort": 2201,
            # What the server would like us to run; the CLI must never use it.
            "sshCommand": f'ssh -oProxyCommand="touch {self.marker}" x',
            "sshProblem": None,
            "cpu": 1.0,
            "memory": "1g",
            "disk": "10g",
            "region": "",
            "failureReason": None,
            "pricePerHour": "0.01",
            "createdAt": "2026-01-01T00:00:00Z",
            **over,
        }
        self.backend.vms = {"v1": body}
        return "v1"

    def kumulus(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.home, *args, path=self.path)

    def host_key_options(self) -> list[str]:
        # These VMs have no host key: ssh files the first one it is shown (see
        # test_cli_ssh_checks_the_host_key.py for VMs that have one).
        path = self.home / "kumulus" / "known_hosts"
        return known_hosts.ssh_options(path, "vm-v1", verified=False)

    def recorded(self) -> list[str] | None:
        if not self.record.exists():
            return None
        value = json.loads(self.record.read_text())
        assert isinstance(value, list)
        return value


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeBackend() as backend:
        yield Env(tmp_path, backend)


def test_valid_host_runs_ssh_with_an_argv_built_here(env: Env) -> None:
    out = env.kumulus("vm", "ssh", env.vm())
    assert out.returncode == 0, out.stderr
    assert env.recorded() == ["-p", "2201", *env.host_key_options(), "--", "dev@203.0.113.5"]
    assert not env.marker.exists()


def test_ipv6_host_goes_without_brackets(env: Env) -> None:
    out = env.kumulus("vm", "ssh", env.vm(sshHost="2001:DB8::5"))
    assert out.returncode == 0, out.stderr
    assert env.recorded() == ["-p", "2201", *env.host_key_options(), "--", "dev@2001:db8::5"]


def test_identity_file_goes_before_the_destination(env: Env, tmp_path: Path) -> None:
    key = tmp_path / "id key"
    out = env.kumulus("vm", "ssh", env.vm(), "-i", str(key))
    assert out.returncode == 0, out.stderr
    assert env.recorded() == [
        "-i",
        str(key),
        "-p",
        "2201",
        *env.host_key_options(),
        "--",
        "dev@203.0.113.5",
    ]


@pytest.mark.parametrize(
    "over",
    [
        {"sshHost": '127.0.0.1 "-oProxyCommand=touch MARKER"'},
        {"sshHost": "-oProxyCommand=touch MARKER"},
        {"sshHost": "203.0.113.5 -oProxyCommand=x"},
        {"sshHost": "[::1]"},
        {"sshHost": "fe80::1%eth0"},
        {"sshHost": "host\n"},
        {"sshHost": ["203.0.113.5"]},
        {"sshPort": "2201 -oProxyCommand=touch MARKER"},
        {"sshPort": 0},
        {"sshPort": 70000},
        {"sshPort": True},
        {"username": "-oProxyCommand=touch MARKER"},
        {"username": "dev@evil"},
        {"username": None},
    ],
)
def test_hostile_parts_are_refused(env: Env, over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, str):
            over[key] = value.replace("MARKER", str(env.marker))
    out = env.kumulus("vm", "ssh", env.vm(**over))
    assert out.returncode == 1
    assert "refusing to run ssh for VM v1" in out.stderr and "Traceback" not in out.stderr
    assert env.recorded() is None  # ssh never ran
    assert not env.marker.exists()


def test_missing_address_or_a_problem_the_server_reports_is_refused(env: Env) -> None:
    out = env.kumulus("vm", "ssh", env.vm(sshHost=None, sshPort=None, actualState="starting"))
    assert out.returncode == 4 and "has no SSH address yet (starting)" in out.stderr
    out = env.kumulus(
        "vm", "ssh", env.vm(sshHost=None, sshPort=None, sshProblem="the host's address is bad")
    )
    assert out.returncode == 1 and "the host's address is bad" in out.stderr
    assert env.recorded() is None and not env.marker.exists()


def test_listed_and_created_vms_show_a_line_built_here(env: Env) -> None:
    env.vm()
    listed = env.kumulus("vm", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "ssh -p 2201 dev@203.0.113.5" in listed.stdout
    created = env.kumulus("vm", "create", "--username", "dev")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[-1] == "ssh -p 2201 dev@203.0.113.5"
    env.vm(sshHost='127.0.0.1 "-oProxyCommand=touch MARKER"')
    listed = env.kumulus("vm", "ls")
    created = env.kumulus("vm", "create", "--username", "dev")
    for out in (listed, created):
        assert out.returncode == 0, out.stderr
        assert "ProxyCommand" not in out.stdout
    assert "no ssh address" in created.stderr
    assert not env.marker.exists()
