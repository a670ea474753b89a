"""What a VM may send and how fast it may write, on the real engine:
- outbound SMTP (25, 587) is refused at once while another port of the same server answers
  (the server is a test host of ours: a network namespace with an address of the 198.18/15
  benchmarking range, reached through the host like any outside server);
- over IPv6 the VM reaches nothing of the host: it has no IPv6 and cannot turn it on, and
  ip6tables rules like the IPv4 ones stand behind that;
- direct writes to the VM's disk run at its I/O cap, not at the disk's speed."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.e2e.conftest import VMFactory, ssh

pytestmark = pytest.mark.slow

SMTP = (25, 587)
OPEN = 8025
# Accepts on each port and records which ones were connected to, one line each.
SERVER = """
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); log.write(f"{port}\\n"); c.close()
for p in map(int, sys.argv[2:]):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
IP_FREEBIND = 15  # linux/in.h; the socket module does not export it
PROBE = "timeout 5 bash -c 'echo > /dev/tcp/{ip}/{port}' 2>&1; echo rc=$?"


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class OutsideServer:
    """A network namespace on this machine: our own stand-in for a server outside."""

    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.ns, self.veth = f"kmtest{tag}", f"kmtv{tag}"
        third, fourth = secrets.randbelow(256), 4 * secrets.randbelow(64)
        self.host_ip, self.ip = f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"
        self.log = tmp / "connections"
        self.log.touch()
        _run("ip", "netns", "add", self.ns)
        _run(
            "ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns
        )
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        for argv in (
            ["ip", "addr", "add", f"{self.ip}/30", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "link", "set", "lo", "up"],
        ):
            _run("ip", "netns", "exec", self.ns, *argv)
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", SERVER, str(self.log)]
            + [str(p) for p in (*SMTP, OPEN)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None and self.server.stdout.readline().strip() == "ready"

    def connected(self) -> list[int]:
        return [int(line) for line in self.log.read_text().split()]

    def close(self) -> None:
        self.server.kill()
        self.server.wait()
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[OutsideServer]:
    host = OutsideServer(tmp_path)
    yield host
    host.close()


def _smtp_rejects() -> int:
    """Packets the IPv4 SMTP rule has refused so far."""
    out = _run("iptables", "-w", "5", "-L", "DOCKER-USER", "-v", "-x", "-n")
    line = next(x for x in out.splitlines() if "multiport dports 25,465,587" in x)
    return int(line.split()[0])


def test_smtp_is_refused_and_other_ports_are_not(
    make_vm: VMFactory, ssh_keypair: tuple[Path, str], outside: OutsideServer
) -> None:
    vm = make_vm()
    before = _smtp_rejects()
    out = ssh(ssh_keypair[0], vm, PROBE.format(ip=outside.ip, port=OPEN))
    assert "rc=0" in out.stdout, out.stdout + out.stderr  # the server is reachable
    for port in SMTP:
        started = time.monotonic()
        out = ssh(ssh_keypair[0], vm, PROBE.format(ip=outside.ip, port=port))
        # Refused at once (a reset), not left to time out, and never reaching the server.
        assert "Connection refused" in out.stdout and "rc=1" in out.stdout, out.stdout
        assert time.monotonic() - started < 4.5
    assert outside.connected() == [OPEN]
    assert _smtp_rejects() >= before + len(SMTP)


def test_ipv6_reaches_nothing_of_the_host(
    make_vm: VMFactory, ssh_keypair: tuple[Path, str], docker_client: docker.DockerClient
) -> None:
    rules = _run("ip6tables", "-w", "5", "-S")
    assert "-A INPUT -i kmvm+ -j KUMULUS-VM-INPUT" in rules
    assert "--dports 25,465,587 -j REJECT --reject-with tcp-reset" in rules
    vm = make_vm()
    bridge = f"kmvm{vm['vmId'][:11]}"
    addr = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", _run("ip", "-6", "addr", "show", bridge))
    if addr is None:
        pytest.skip("no IPv6 link-local address on the VM's bridge: nothing to reach")
    # A service of the host's on the bridge's own IPv6 address, the one a VM could reach.
    server = socket.socket(socket.AF_INET6)
    # A fresh bridge's address is "tentative" (duplicate detection) for a moment: bind anyway.
    server.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    server.bind((addr.group(1), 0, 0, socket.if_nametoindex(bridge)))
    server.listen()
    server.setblocking(False)
    try:
        port = server.getsockname()[1]
        out = ssh(
            ssh_keypair[0],
            vm,
            "cat /proc/sys/net/ipv6/conf/all/disable_ipv6; "
            "sudo -n sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6' 2>/dev/null "
            "&& echo ENABLED || echo enable-denied; "
            + PROBE.format(ip=f"{addr.group(1)}%eth0", port=port),
        )
        disabled, enabled = out.stdout.splitlines()[:2]
        # The VM has no IPv6 (Docker turns it off on networks without it) and cannot turn
        # it on (no CAP_NET_ADMIN); where it had, the ip6tables INPUT rule drops (124).
        assert enabled == "enable-denied", out.stdout
        if disabled.strip() == "1":
            assert "rc=0" not in out.stdout, out.stdout
        else:
            assert "rc=124" in out.stdout, out.stdout + out.stderr
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing connected
    finally:
        server.close()


def test_direct_writes_run_at_the_vms_io_cap(
    make_vm: VMFactory,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,
    api: httpx.Client,
) -> None:
    isolation = api.get("/v1/host").json()["isolation"]
    if not isolation["ioLimits"]:
        pytest.skip(f"this engine cannot cap disk I/O: {isolation['detail']}")
    vm = make_vm(cpu=0.25, disk="1g")  # the floor: 20 MiB/s, 200 IOPS
    host_config = docker_client.api.inspect_container(f"kumulus-{vm['vmId']}")["HostConfig"]
    caps = host_config["BlkioDeviceWriteBps"]
    assert caps and caps[0]["Rate"] == 20 << 20, json.dumps(caps)
    assert host_config["BlkioDeviceWriteIOps"][0]["Rate"] == 200
    out = ssh(
        ssh_keypair[0],
        vm,
        "dd if=/dev/zero of=$HOME/io bs=1M count=40 oflag=direct 2>&1 | tail -1; rm -f $HOME/io",
        timeout=60,
    )
    # "41943040 bytes (42 MB, 40 MiB) copied, 2.0 s, 21.0 MB/s": at most the cap (20 MiB/s
    # is 21.0 MB/s) plus what the throttle lets through in its first slice.
    seconds = float(re.search(r"copied, ([0-9.]+) s", out.stdout).group(1))  # type: ignore[union-attr]
    assert 40 / seconds <= 20 * 1.15, out.stdout
