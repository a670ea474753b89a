"""The agent only sees and touches containers it labelled as Kumulus VMs."""

import docker
import httpx

from tests.e2e.conftest import IMAGE


def test_unlabelled_container_cannot_be_seen_stopped_or_deleted(
    api: httpx.Client, docker_client: docker.DockerClient
) -> None:
    # Even a container named exactly like a VM is not ours without the label.
    impostor = docker_client.containers.run(
        IMAGE, entrypoint=["sleep", "300"], name="kumulus-0123456789abcdef", detach=True
    )
    bystander = docker_client.containers.run(IMAGE, entrypoint=["sleep", "300"], detach=True)
    try:
        vm_id = "0123456789abcdef"
        assert vm_id not in [v["vmId"] for v in api.get("/v1/vms").json()["items"]]
        for method, path, body in [
            ("POST", "/stop-vm", {"vmId": vm_id}),
            ("POST", "/delete-vm", {"vmId": vm_id}),
            ("DELETE", f"/v1/vms/{vm_id}", None),
            ("POST", f"/v1/vms/{vm_id}/stop", None),
            ("GET", f"/v1/vms/{vm_id}/logs", None),
        ]:
            assert api.request(method, path, json=body).status_code == 404
        for ident in (bystander.id, bystander.name, bystander.id[:16]):
            assert api.delete(f"/v1/vms/{ident}").status_code == 404
            assert api.post("/stop-vm", json={"vmId": ident}).status_code in (404, 422)
        impostor.reload()
        bystander.reload()
        assert impostor.status == "running" and bystander.status == "running"
    finally:
        impostor.remove(force=True)
        bystander.remove(force=True)


def test_another_agents_vm_is_invisible(
    make_vm,
    docker_client: docker.DockerClient,
    tmp_path,
    ssh_keypair,  # type: ignore[no-untyped-def]
) -> None:
    from tests.e2e.agent_process import AgentProcess

    vm = make_vm()
    other = AgentProcess(tmp_path / "other", (23520, 23529)).start()
    try:
        with other.client() as api:
            assert api.get("/v1/vms").json()["items"] == []
            assert api.post("/delete-vm", json={"vmId": vm["vmId"]}).status_code == 404
            assert api.post(f"/v1/vms/{vm['vmId']}/stop").status_code == 404
    finally:
        other.stop()
    assert docker_client.containers.get(f"kumulus-{vm['vmId']}").status == "running"
