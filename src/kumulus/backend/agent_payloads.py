"""What a provider's agent may say in its signed envelopes, validated at the edge.

Everything here is chosen by a provider, a stranger to the developers whose VMs run on its
hosts and to the platform. A signature proves who said it, not that it is harmless, so each
field has a shape: ids and states are short tokens of a fixed alphabet, versions a version
string, addresses an IP or DNS name (`core/hostnames.py`), numbers numbers (strictly: "12"
is not 12), lists bounded. Anything else is a 422 naming the field; nothing of it is stored.
Unknown keys are ignored (newer agents may say more) and never stored: heartbeats are
stored as these models dump them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from kumulus.core.hostnames import HostnameError, PublicHost, validate_public_host
from kumulus.core.schemas import VM_ID_RE, Capacity, IsolationReport

HOST_ID_PATTERN = r"^[0-9a-z]{1,32}$"  # ours: secrets.token_hex(8)
# PEP 440 and semver both fit: "0.1.0", "1.2.3rc1", "1.0.0-beta.2+build.5".
AGENT_VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$"
# Docker's container states are lowercase words ("running", "exited"); an unknown one is
# read as failed (vms.reconcile_inventory).
VM_STATE_PATTERN = r"^[a-z]{1,16}$"
MAX_VMS_REPORTED = 4096
_VISIBLE_ASCII = re.compile(r"[!-~]+")

HostId = Annotated[str, Field(pattern=HOST_ID_PATTERN, max_length=32)]
AgentVersion = Annotated[str, Field(pattern=AGENT_VERSION_PATTERN, max_length=32)]
Count = Annotated[int, Field(ge=0, le=1 << 62, strict=True)]
Amount = Annotated[float, Field(ge=0, le=1e18, strict=True)]


def _api_url(value: str) -> str:
    """http(s)://HOST[:PORT][/] where HOST is an IP address, a DNS name or localhost."""
    problem = "an http:// or https:// URL with a host (IP address or DNS name) and a port only"
    if not _VISIBLE_ASCII.fullmatch(value):
        raise ValueError(f"{problem}: no spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError as exc:
        raise ValueError(problem) from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == 0
    ):
        raise ValueError(problem)
    if parts.hostname != "localhost":
        try:
            validate_public_host(parts.hostname)
        except HostnameError as exc:
            raise ValueError(str(exc)) from exc
    return value.rstrip("/")


ApiUrl = Annotated[str, Field(max_length=255), AfterValidator(_api_url)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class RegisterPayload(_Payload):
    kind: Literal["register"]
    provider_token: str = Field(alias="providerToken", pattern=r"^[A-Za-z0-9_-]{1,128}$")
    api_url: ApiUrl = Field(alias="apiUrl")
    # Lands in the ssh line developers run: an IP address or a DNS name, nothing else.
    public_ip: PublicHost = Field(alias="publicIp", max_length=64)
    capacity: Capacity
    disk_quota: bool = Field(alias="diskQuota", strict=True)
    agent_version: AgentVersion = Field(alias="agentVersion")
    isolation: IsolationReport | None = None


class HostPayload(_Payload):
    kind: str = Field(max_length=16)
    host_id: HostId = Field(alias="hostId")


class IpPayload(HostPayload):
    public_ip: PublicHost = Field(alias="publicIp", max_length=64)


class MachineReport(_Payload):
    """The machine the agent runs on, as it reports it (stats.StatsCollector.collect)."""

    cpu_count: Count | None = Field(default=None, alias="cpuCount")
    cpu_percent: Amount | None = Field(default=None, alias="cpuPercent")
    memory_total: Count | None = Field(default=None, alias="memoryTotal")
    memory_used: Count | None = Field(default=None, alias="memoryUsed")
    memory_percent: Amount | None = Field(default=None, alias="memoryPercent")
    disk_total: Count | None = Field(default=None, alias="diskTotal")
    disk_used: Count | None = Field(default=None, alias="diskUsed")
    disk_percent: Amount | None = Field(default=None, alias="diskPercent")
    load: list[Amount] | None = Field(default=None, max_length=3)
    uptime: Amount | None = None


class DockerReport(_Payload):
    up: bool = Field(strict=True)
    version: str | None = Field(default=None, pattern=r"^[0-9A-Za-z.+_~-]{1,32}$")


class VMCounts(_Payload):
    total: Count
    running: Count
    unhealthy: Count


class VMReport(_Payload):
    """One VM of the agent's inventory: its id and the engine's state, and usage."""

    vm_id: str = Field(alias="vmId", pattern=VM_ID_RE.pattern)
    state: str = Field(pattern=VM_STATE_PATTERN)
    cpu_percent: Amount | None = Field(default=None, alias="cpuPercent")
    memory_bytes: Count | None = Field(default=None, alias="memoryBytes")
    memory_limit: Count | None = Field(default=None, alias="memoryLimit")
    disk_used_bytes: Count | None = Field(default=None, alias="diskUsedBytes")


class HeartbeatPayload(HostPayload):
    kind: Literal["health"]
    agent_version: AgentVersion | Literal[""] = Field(default="", alias="agentVersion")
    # A new one each time the agent starts (agent/stats.py); none from older agents.
    agent_run: str | None = Field(default=None, alias="agentRun", pattern=r"^[0-9a-f]{16}$")
    host: MachineReport | None = None
    capacity: Capacity | None = None
    docker: DockerReport | None = None
    vms: VMCounts | None = None
    vm_stats: list[VMReport] | None = Field(
        default=None, alias="vmStats", max_length=MAX_VMS_REPORTED
    )

    def inventory(self) -> dict[str, str] | None:
        """{agent VM id: engine state}, or None when the agent reported no inventory."""
        if self.vm_stats is None:
            return None
        return {vm.vm_id: vm.state for vm in self.vm_stats}

    def disk_usage(self) -> dict[str, int]:
        """{agent VM id: bytes used of its disk quota} for the VMs the agent measured."""
        return {
            vm.vm_id: vm.disk_used_bytes
            for vm in self.vm_stats or ()
            if vm.disk_used_bytes is not None
        }

    def stored(self) -> dict[str, Any]:
        """What is kept of this heartbeat for its retention (the provider console's charts
        read `host`): the fields above but the per-VM list, which is applied to the VMs
        (`inventory`) and not kept: up to 4,096 entries per heartbeat, read by nobody."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"vm_stats"})
