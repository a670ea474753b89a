from pathlib import Path

import httpx

from tests.e2e.conftest import ssh


def test_stop_refuses_ssh_and_start_brings_back_the_files(
    api: httpx.Client,
    make_vm,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    key = ssh_keypair[0]
    vm = make_vm()
    assert (
        ssh(key, vm, "echo precious > ~/data.txt && sudo touch /etc/kumulus-mark").returncode == 0
    )

    stopped = api.post("/stop-vm", json={"vmId": vm["vmId"]}).json()
    assert stopped["status"] == "Stopped"
    assert api.get(f"/v1/vms/{vm['vmId']}").json()["status"] == "Stopped"
    assert ssh(key, vm, "true").returncode != 0

    started = api.post(f"/v1/vms/{vm['vmId']}/start")
    assert started.status_code == 200
    assert started.json()["status"] == "Running"
    assert started.json()["sshPort"] == vm["sshPort"]
    out = ssh(key, vm, "cat ~/data.txt; ls /etc/kumulus-mark")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["precious", "/etc/kumulus-mark"]
