"""`kumulus vm show ID` prints a VM's fields with its disk usage against its size (which
`df` inside the VM cannot show) and its host key fingerprint; hostile text from the backend
reaches the terminal without control characters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli_runner import run_cli
from tests.json_server import JsonServer

VM = {
    "id": "3f2a9c0d1e4b5a6f",
    "name": "web",
    "username": "dev",
    "cpu": 1,
    "memory": "1g",
    "disk": "10g",
    "region": "eu",
    "hostId": "abcd",
    "intendedState": "running",
    "actualState": "running",
    "sshHost": "203.0.113.7",
    "sshPort": 2201,
    "hostKey": None,
    "hostKeyFingerprint": "SHA256:Qx0n2XcDWMSS0K8b2sZbhYbJxq7F5xqFQm2p4mV3xkA",
    "diskUsedBytes": 3 << 29,  # 1.5 GiB
    "pricePerHour": "0.02",
    "createdAt": "2026-12-01T00:00:00Z",
    "sshCommand": "ssh -p 2201 dev@203.0.113.7",
    "failureReason": None,
}


def _show(tmp_path: Path, vm: dict[str, Any]) -> str:
    def answer(method: str, path: str) -> tuple[int, Any]:
        assert (method, path) == ("GET", f"/v1/vms/{VM['id']}")
        return 200, vm

    with JsonServer(answer) as backend:
        (tmp_path / "kumulus").mkdir(exist_ok=True)
        (tmp_path / "kumulus" / "cli.json").write_text(
            json.dumps({"backend": backend.url, "token": "kmt_test"})
        )
        out = run_cli(tmp_path, "vm", "show", str(VM["id"]))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_vm_show_prints_disk_usage_and_host_key(tmp_path: Path) -> None:
    out = _show(tmp_path, VM)
    assert "disk:      1.5 GiB used of 10 GiB (15 %)" in out
    assert "host key:  SHA256:Qx0n2XcDWMSS0K8b2sZbhYbJxq7F5xqFQm2p4mV3xkA" in out
    assert "ssh:       ssh -p 2201 dev@203.0.113.7" in out


def test_unknown_usage_and_hostile_text(tmp_path: Path) -> None:
    out = _show(
        tmp_path,
        {**VM, "diskUsedBytes": None, "hostKeyFingerprint": None, "name": "x\x1b[2Jboom"},
    )
    assert "disk:      10 GiB, usage not reported yet by its host" in out
    assert "host key:  not known" in out
    assert "\x1b" not in out and "boom" in out
