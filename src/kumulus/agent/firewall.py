"""Keep VMs away from the host and from private networks, with iptables.

Docker already separates bridge networks from each other. It does not stop a VM from
reaching services the host exposes on its own addresses, nor the provider's LAN or a cloud
metadata service. Each VM's bridge is named kmvm*, so two rules cover every VM:
- INPUT from kmvm+ is dropped (replies to connections the host opened are allowed);
- DOCKER-USER drops forwarding from kmvm+ to private, link-local and CGNAT ranges.
Commands are argument lists, never shell text.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

IFACE = "kmvm+"
CHAIN = "KUMULUS-VM-INPUT"
PRIVATE_RANGES = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
]


def _ipt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", "5", *args], capture_output=True, text=True, check=False, timeout=30
    )


def _ensure(table_chain: tuple[str, ...], rule: list[str], position: int | None = None) -> None:
    if _ipt(*("-C", *table_chain, *rule)).returncode == 0:
        return
    if position is None:
        cmd = ["-A", *table_chain, *rule]
    else:
        cmd = ["-I", *table_chain, str(position), *rule]
    res = _ipt(*cmd)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or "iptables failed")


def host_nameservers() -> list[str]:
    """IPv4 resolvers Docker forwards VM DNS queries to (as it picks them)."""
    found: list[str] = []
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    addr = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if addr.version == 4 and not addr.is_loopback and str(addr) not in found:
                    found.append(str(addr))
    return found


def ensure_isolation() -> tuple[bool, str]:
    """Install the rules (idempotent). Return (active, explanation for /v1/host)."""
    if shutil.which("iptables") is None:
        return False, "iptables is not installed: VMs can reach the host's services"
    try:
        if _ipt("-n", "-L", CHAIN).returncode != 0:
            res = _ipt("-N", CHAIN)
            if res.returncode != 0:
                raise RuntimeError(res.stderr.strip())
        _ensure((CHAIN,), ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"])
        _ensure((CHAIN,), ["-j", "DROP"])
        _ensure(("INPUT",), ["-i", IFACE, "-j", CHAIN], position=1)
        if _ipt("-n", "-L", "DOCKER-USER").returncode != 0:
            _ipt("-N", "DOCKER-USER")
            _ensure(("FORWARD",), ["-j", "DOCKER-USER"], position=1)
        desired = [
            ["-i", IFACE, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"]
        ]
        # Docker's embedded DNS forwards from inside the VM's namespace to the host's
        # resolvers, which often sit in a private range: let DNS to exactly those through.
        for ns in host_nameservers():
            for proto in ("udp", "tcp"):
                desired.append(
                    ["-i", IFACE, "-d", f"{ns}/32", "-p", proto, "--dport", "53", "-j", "RETURN"]
                )
        desired += [["-i", IFACE, "-d", cidr, "-j", "DROP"] for cidr in PRIVATE_RANGES]
        for rule in reversed(desired):  # inserting at 1 in reverse keeps this order
            _ensure(("DOCKER-USER",), rule, position=1)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("VM isolation rules not installed: %s", exc)
        return False, f"iptables rules could not be installed: {exc}"
    return True, "VMs cannot reach the host or private networks (iptables, interfaces kmvm+)"
