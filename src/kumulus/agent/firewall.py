"""Keep VMs away from the host, from private networks and from mail servers, with iptables
and ip6tables.

Docker already separates bridge networks from each other. It does not stop a VM from
reaching services the host exposes on its own addresses, nor the provider's LAN or a cloud
metadata service, nor from sending spam from the provider's address. Each VM's bridge is
named kmvm*, so a few rules cover every VM, in both address families:
- INPUT from kmvm+ is dropped (replies to connections the host opened are allowed);
- forwarding from kmvm+ to private, link-local and CGNAT ranges (IPv6: unique-local and
  link-local) is dropped, and new connections to SMTP ports (25, 465, 587) are refused with
  a TCP reset unless the provider allows them (KUMULUS_AGENT_ALLOW_SMTP).
IPv4 forwarding rules live in Docker's DOCKER-USER chain (Docker keeps it first in FORWARD);
Docker does not manage ip6tables here, so the IPv6 ones live in a chain of ours hooked first
into FORWARD. VM networks get no IPv6 address, but the host's bridge has a link-local one,
which a VM could otherwise use to reach the host's services. Commands are argument lists,
never shell text; `rules` builds them without running anything, so they can be tested.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IFACE = "kmvm+"
CHAIN = "KUMULUS-VM-INPUT"
CHAIN6_FORWARD = "KUMULUS-VM-FORWARD"
SMTP_PORTS = (25, 465, 587)
PRIVATE_RANGES = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
]
PRIVATE_RANGES6 = ["fc00::/7", "fe80::/10"]


@dataclass(frozen=True)
class Rule:
    """One rule: `chain` (of the filter table), its match and target, and where it goes:
    `first` rules are inserted at the top of a chain Docker also writes to, the others
    appended to a chain of ours."""

    chain: str
    spec: tuple[str, ...]
    first: bool = False


@dataclass(frozen=True)
class FirewallState:
    active: bool
    detail: str
    smtp_blocked: bool = False


def _smtp_rule(family: int) -> tuple[str, ...]:
    ports = ",".join(str(p) for p in SMTP_PORTS)
    return ("-i", IFACE, "-p", "tcp", "-m", "multiport", "--dports", ports,
            "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip


def rules(family: int, nameservers: list[str], allow_smtp: bool) -> tuple[list[str], list[Rule]]:
    """(chains of ours to create, rules in order) for IPv4 (`family` 4) or IPv6 (6).
    `nameservers` are the host's resolvers of that family: Docker's embedded DNS forwards
    to them from inside the VM's namespace, and they often sit in a private range."""
    established = ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN")
    input_rules = [Rule(CHAIN, established), Rule(CHAIN, ("-j", "DROP"))]
    hook_input = Rule("INPUT", ("-i", IFACE, "-j", CHAIN), first=True)
    forward = ("-i", IFACE, *established)
    dns = [
        ("-i", IFACE, "-d", f"{ns}/{32 if family == 4 else 128}", "-p", proto,
         "--dport", "53", "-j", "RETURN")
        for ns in nameservers
        for proto in ("udp", "tcp")
    ]  # fmt: skip
    smtp = [] if allow_smtp else [_smtp_rule(family)]
    ranges = PRIVATE_RANGES if family == 4 else PRIVATE_RANGES6
    drops = [("-i", IFACE, "-d", cidr, "-j", "DROP") for cidr in ranges]
    ordered = [forward, *dns, *smtp, *drops]
    if family == 4:
        # Inserted at the top of DOCKER-USER in reverse, which keeps this order.
        forward_rules = [Rule("DOCKER-USER", spec, first=True) for spec in reversed(ordered)]
        return [CHAIN], [*input_rules, hook_input, *forward_rules]
    hook_forward = Rule("FORWARD", ("-i", IFACE, "-j", CHAIN6_FORWARD), first=True)
    forward_rules = [Rule(CHAIN6_FORWARD, spec) for spec in ordered]
    return [CHAIN, CHAIN6_FORWARD], [*input_rules, hook_input, *forward_rules, hook_forward]


class _Tables:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-w", "5", *args], capture_output=True, text=True, check=False, timeout=30
        )

    def must(self, *args: str) -> None:
        res = self.run(*args)
        if res.returncode != 0:
            raise RuntimeError(f"{self.binary} {args[0]}: {res.stderr.strip() or 'failed'}")

    def ensure(self, rule: Rule) -> None:
        if self.run("-C", rule.chain, *rule.spec).returncode == 0:
            return
        if rule.first:
            self.must("-I", rule.chain, "1", *rule.spec)
        else:
            self.must("-A", rule.chain, *rule.spec)

    def remove(self, chain: str, spec: tuple[str, ...]) -> None:
        while self.run("-C", chain, *spec).returncode == 0:
            self.must("-D", chain, *spec)

    def apply(self, family: int, nameservers: list[str], allow_smtp: bool) -> None:
        chains, wanted = rules(family, nameservers, allow_smtp)
        for chain in chains:
            if self.run("-n", "-L", chain).returncode != 0:
                self.must("-N", chain)
        if family == 4 and self.run("-n", "-L", "DOCKER-USER").returncode != 0:
            self.must("-N", "DOCKER-USER")
            self.ensure(Rule("FORWARD", ("-j", "DOCKER-USER"), first=True))
        if allow_smtp:  # the provider changed its mind: take the block away again
            self.remove("DOCKER-USER" if family == 4 else CHAIN6_FORWARD, _smtp_rule(family))
        for rule in wanted:
            if family == 6 and rule.chain == CHAIN6_FORWARD:
                continue  # rebuilt below, in order
            self.ensure(rule)
        if family == 6:
            # Our own chain: rewrite it whole when it is not exactly what we want, so the
            # order holds however it was changed.
            want = [r.spec for r in wanted if r.chain == CHAIN6_FORWARD]
            have = self.run("-S", CHAIN6_FORWARD).stdout.splitlines()
            if len(have) - 1 != len(want) or any(
                self.run("-C", CHAIN6_FORWARD, *spec).returncode != 0 for spec in want
            ):
                self.must("-F", CHAIN6_FORWARD)
                for spec in want:
                    self.must("-A", CHAIN6_FORWARD, *spec)


def host_nameservers(family: int = 4) -> list[str]:
    """Resolvers of one address family that Docker forwards VM DNS queries to (as it picks
    them)."""
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
                    addr = ipaddress.ip_address(parts[1].split("%")[0])
                except ValueError:
                    continue
                if addr.version == family and not addr.is_loopback and str(addr) not in found:
                    found.append(str(addr))
    return found


def ipv6_enabled() -> bool:
    return Path("/proc/net/if_inet6").exists()


def ensure_isolation(allow_smtp: bool = False) -> FirewallState:
    """Install the rules (idempotent) for IPv4 and, where the kernel has IPv6, for IPv6.
    The state says whether VMs are isolated and how, for the isolation report."""
    families = [(4, "iptables")] + ([(6, "ip6tables")] if ipv6_enabled() else [])
    for _, binary in families:
        if shutil.which(binary) is None:
            return FirewallState(False, f"{binary} is not installed: VMs can reach the host")
    try:
        for family, binary in families:
            _Tables(binary).apply(family, host_nameservers(family), allow_smtp)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("VM isolation rules not installed: %s", exc)
        return FirewallState(False, f"firewall rules could not be installed: {exc}")
    covered = "IPv4 and IPv6" if len(families) == 2 else "IPv4 (the kernel has no IPv6)"
    smtp = "SMTP allowed by the provider" if allow_smtp else "outbound SMTP (25, 465, 587) refused"
    return FirewallState(
        True,
        f"VMs cannot reach the host or private networks ({covered}, interfaces kmvm+); {smtp}",
        smtp_blocked=not allow_smtp,
    )
