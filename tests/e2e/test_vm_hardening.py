"""A VM is an unprivileged container: remapped root, few capabilities, seccomp, no Docker
socket, no mounts, and its own network that reaches neither the host nor other VMs."""

from pathlib import Path

import docker

from tests.e2e.conftest import ssh

CAP_NET_RAW, CAP_SYS_ADMIN, CAP_MKNOD, CAP_SETUID = 13, 21, 27, 7


def test_root_in_a_vm_is_unprivileged(
    make_vm,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,  # type: ignore[no-untyped-def]
) -> None:
    vm = make_vm()
    out = ssh(
        ssh_keypair[0],
        vm,
        "sudo -n grep -E '^(CapEff|Seccomp):' /proc/self/status; "
        "sudo -n mount -t tmpfs none /mnt >/dev/null 2>&1 && echo MOUNTED || echo mount-denied; "
        "ls /var/run/docker.sock /run/docker.sock 2>/dev/null || echo no-docker-socket; "
        "sudo -n mknod /tmp/sda b 8 0 2>/dev/null && echo MKNOD || echo mknod-denied",
    )
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(":\t") for line in out.stdout.splitlines() if ":\t" in line)
    caps = int(fields["CapEff"], 16)
    assert caps & (1 << CAP_SETUID)  # sudo works
    for cap in (CAP_NET_RAW, CAP_SYS_ADMIN, CAP_MKNOD):
        assert not caps & (1 << cap)
    assert fields["Seccomp"].strip() == "2"  # filter mode: Docker's default profile
    assert "mount-denied" in out.stdout and "no-docker-socket" in out.stdout
    assert "mknod-denied" in out.stdout

    # userns-remap: the VM's root (sshd runs as root) is an unprivileged uid on the host.
    pid = docker_client.api.inspect_container(f"kumulus-{vm['vmId']}")["State"]["Pid"]
    uid_line = next(
        x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:")
    )
    assert int(uid_line.split()[1]) >= 100000


def test_vms_cannot_reach_the_host_or_each_other(
    make_vm,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,  # type: ignore[no-untyped-def]
) -> None:
    a, b = make_vm(), make_vm()
    info = docker_client.api.inspect_container(f"kumulus-{b['vmId']}")
    b_ip = next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]
    a_info = docker_client.api.inspect_container(f"kumulus-{a['vmId']}")
    gateway = next(iter(a_info["NetworkSettings"]["Networks"].values()))["Gateway"]
    assert b_ip and gateway
    probe = "timeout 3 bash -c 'echo > /dev/tcp/{ip}/{port}' 2>&1; echo rc=$?"
    # To the host (its bridge address): nothing answers on port 9, so an unfiltered host
    # would refuse at once (rc=1); the firewall drops silently (timeout, rc=124).
    out = ssh(ssh_keypair[0], a, probe.format(ip=gateway, port=9))
    assert "rc=124" in out.stdout, out.stdout
    # To the other VM's sshd, which does listen: dropped too.
    out = ssh(ssh_keypair[0], a, probe.format(ip=b_ip, port=22))
    assert "rc=124" in out.stdout, out.stdout
    # Sanity: each VM has its own network.
    assert set(a_info["NetworkSettings"]["Networks"]) == {f"kumulus-{a['vmId']}"}
