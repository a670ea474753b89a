"""A provider drains a host (PATCH draining): the scheduler places no new VM there and
says why, the VMs already there keep running and can be stopped and started, and undrain
makes it take VMs again. Only the owner can drain: anyone else gets 404. Over real HTTP,
a backend and an agent on the fake runtime (tests/fuzz_platform.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fuzz_platform import SSH_KEY, platform

SHAPE = {"cpu": 1, "memory": "1g", "disk": "4g"}
WAIT = {"Prefer": "wait=30"}


def _running(http: httpx.Client, headers: dict[str, str], vm_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (vm := http.get(f"/v1/vms/{vm_id}", headers=headers).json())["actualState"] in (
        "pending",
        "starting",
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    return dict(vm)


def test_a_draining_host_keeps_its_vms_and_takes_no_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with platform(tmp_path, monkeypatch) as p, httpx.Client(base_url=p.backend_url) as http:
        dev = {**p.developer, **WAIT}
        vm = http.post(
            "/v1/vms", headers=dev, json={**SHAPE, "username": "dev", "sshKey": SSH_KEY}
        ).json()
        assert _running(http, dev, vm["id"])["actualState"] == "running", vm
        host = f"/v1/provider/hosts/{p.host_id}"
        assert http.get(host, headers=p.provider).json()["draining"] is False

        stranger = http.post(
            "/v1/auth/signup",
            json={"email": "s@example.com", "password": "correct horse battery",
                  "role": "provider"},
        )  # fmt: skip
        assert stranger.status_code == 201
        token = http.post(
            "/v1/auth/login", json={"email": "s@example.com", "password": "correct horse battery"}
        ).json()["token"]
        refused = http.patch(
            host, headers={"Authorization": f"Bearer {token}"}, json={"draining": True}
        )
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
        assert http.get(host, headers=p.provider).json()["draining"] is False

        drained = http.patch(host, headers=p.provider, json={"draining": True})
        assert drained.status_code == 200 and drained.json()["draining"] is True
        assert drained.json()["prices"] == http.get(host, headers=p.provider).json()["prices"]

        quote = http.post("/v1/vms/quote", headers=dev, json=SHAPE)
        assert quote.status_code == 409 and quote.json()["code"] == "no_host_fits"
        assert "draining" in quote.json()["detail"]
        second = http.post(
            "/v1/vms", headers=dev, json={**SHAPE, "username": "dev", "sshKey": SSH_KEY}
        )
        assert second.status_code == 409, second.text

        assert http.get(f"/v1/vms/{vm['id']}", headers=dev).json()["actualState"] == "running"
        stopped = http.post(f"/v1/vms/{vm['id']}/stop", headers=dev).json()
        assert stopped["actualState"] == "stopped", stopped
        http.post(f"/v1/vms/{vm['id']}/start", headers=dev).raise_for_status()
        assert _running(http, dev, vm["id"])["actualState"] == "running"

        undrained = http.patch(host, headers=p.provider, json={"draining": False})
        assert undrained.json()["draining"] is False
        assert http.post("/v1/vms/quote", headers=dev, json=SHAPE).status_code == 200
