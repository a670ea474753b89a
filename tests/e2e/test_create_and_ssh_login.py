"""The original design's local test: curl /create-vm, then ssh in as that user."""

from pathlib import Path

import docker
import httpx

from tests.e2e.conftest import ssh


def test_original_request_gives_a_vm_you_can_ssh_into(
    api: httpx.Client, ssh_keypair: tuple[Path, str], docker_client: docker.DockerClient
) -> None:
    key, pub = ssh_keypair
    resp = api.post(
        "/create-vm",
        json={"username": "devtest", "sshKey": pub, "cpu": 1, "memory": "1g", "disk": "4g"},
    )
    assert resp.status_code == 201, resp.text
    vm = resp.json()
    try:
        assert {"vmId", "sshPort", "username", "status"} <= vm.keys()
        assert vm["status"] == "Running" and vm["username"] == "devtest"
        assert 23000 <= vm["sshPort"] <= 23499

        out = ssh(key, vm, "whoami; sudo -n whoami; . /etc/os-release; echo $ID")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["devtest", "root", "debian"] or out.stdout.split()[:2] == [
            "devtest",
            "root",
        ]

        assert api.post("/get-vm-status", json={"vmId": vm["vmId"]}).json()["status"] == "Running"
        assert vm["vmId"] in [v["vmId"] for v in api.get("/v1/vms").json()["items"]]
        logs = api.post("/get-vm-logs", json={"vmId": vm["vmId"]}).json()["logs"]
        assert "Server listening" in logs
        assert api.get(f"/v1/vms/{vm['vmId']}/logs", params={"tail": 5}).status_code == 200
    finally:
        deleted = api.post("/delete-vm", json={"vmId": vm["vmId"]})
    assert deleted.json() == {"vmId": vm["vmId"], "status": "Deleted"}
    assert docker_client.containers.list(all=True, filters={"name": f"kumulus-{vm['vmId']}"}) == []
    assert docker_client.networks.list(names=[f"kumulus-{vm['vmId']}"]) == []
    assert ssh(key, vm, "true").returncode != 0
    assert api.get(f"/v1/vms/{vm['vmId']}").status_code == 404


def test_passwords_and_root_login_are_refused(
    make_vm,
    ssh_keypair: tuple[Path, str],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    vm = make_vm()
    key, _ = ssh_keypair
    assert ssh(key, {**vm, "username": "root"}, "true").returncode != 0
    other = tmp_path / "other"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    assert ssh(other, vm, "true").returncode != 0
    out = ssh(
        key,
        vm,
        "sudo -n sshd -T | grep -Ei '^(passwordauthentication|permitrootlogin|"
        "kbdinteractiveauthentication) '",
    )
    assert sorted(out.stdout.split("\n")[:3]) == [
        "kbdinteractiveauthentication no",
        "passwordauthentication no",
        "permitrootlogin no",
    ]
