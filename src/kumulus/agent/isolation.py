"""What keeps this host's VMs apart from the host and from each other, as one report.

Three parts are required: userns-remap (root in a VM is an unprivileged uid on the host),
the firewall (agent/firewall.py) and the disk quota (a VM cannot fill the host's disk).
Without all three the agent refuses creates, unless the provider opted out
(KUMULUS_AGENT_ALLOW_WEAK_ISOLATION), and the host reports its level as "weak" in its
signed inventory and heartbeats, so the scheduler places there only VMs whose developer
accepted that. Disk I/O caps and the SMTP block are reported, not required: neither
protects the host itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumulus.core.schemas import IsolationPart, IsolationReport

REQUIRED: tuple[IsolationPart, ...] = ("userns-remap", "firewall", "disk-quota")


@dataclass(frozen=True)
class Isolation:
    userns_remap: bool
    firewall: bool
    firewall_detail: str
    disk_quota: bool
    disk_quota_detail: str
    io_limits: bool
    io_detail: str
    smtp_blocked: bool
    allow_weak: bool = False  # the provider accepts creates without full isolation

    @property
    def missing(self) -> list[IsolationPart]:
        have = {
            "userns-remap": self.userns_remap,
            "firewall": self.firewall,
            "disk-quota": self.disk_quota,
        }
        return [part for part in REQUIRED if not have[part]]

    @property
    def full(self) -> bool:
        return not self.missing

    def problem(self) -> str:
        """What is missing and how to fix each, one sentence; empty when isolation is full."""
        fixes = {
            "userns-remap": 'userns-remap (set "userns-remap": "default" in Docker\'s '
            "daemon.json and restart Docker)",
            "firewall": f"the firewall ({self.firewall_detail})",
            "disk-quota": f"the disk quota ({self.disk_quota_detail})",
        }
        return "; ".join(fixes[part] for part in self.missing)

    def report(self) -> IsolationReport:
        parts = [
            "root in VMs is " + ("an unprivileged host uid" if self.userns_remap else "HOST ROOT"),
            self.firewall_detail,
            self.disk_quota_detail,
            self.io_detail,
        ]
        if self.missing and self.allow_weak:
            parts.append("the provider accepts VMs without full isolation")
        return IsolationReport(
            level="full" if self.full else "weak",
            missing=self.missing,
            userns_remap=self.userns_remap,
            firewall=self.firewall,
            disk_quota=self.disk_quota,
            io_limits=self.io_limits,
            smtp_blocked=self.smtp_blocked,
            detail="; ".join(parts)[:500],
        )
