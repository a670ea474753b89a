"""API schemas shared by the agent, the backend and the CLI (JSON is camelCase, as the
original agent API spoke it: vmId, sshKey, sshPort)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kumulus.core.hostkeys import HostKeyLine, parse_host_key
from kumulus.core.sizes import SizeError, parse_size
from kumulus.core.sshkeys import SSHKeyError, parse_ssh_public_key
from kumulus.core.usernames import UsernameError, validate_username

VM_ID_RE = re.compile(r"^[0-9a-f]{16}$")
SIZE_TEXT_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?[kmgtb]$"  # as sizes.format_size writes
MAX_CPU = 256.0


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
    )


def _size(value: Any) -> int:
    try:
        return parse_size(value)
    except SizeError as exc:
        raise ValueError(str(exc)) from exc


def _username(value: str) -> str:
    try:
        return validate_username(value)
    except UsernameError as exc:
        raise ValueError(str(exc)) from exc


def _ssh_key_line(value: str) -> str:
    try:
        return parse_ssh_public_key(value).line
    except SSHKeyError as exc:
        raise ValueError(str(exc)) from exc


def _utc(value: datetime) -> datetime:
    # Rows from SQLite come back naive; every time we store is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Every timestamp an API answers with: RFC 3339 with an offset ("...Z").
Timestamp = Annotated[datetime, AfterValidator(_utc)]

# Validated field types, shared by every API that takes these inputs.
Size = Annotated[int, BeforeValidator(_size)]
Username = Annotated[str, Field(max_length=32, examples=["devtest"]), AfterValidator(_username)]
SshKeyLine = Annotated[
    str,
    Field(max_length=16384, examples=["ssh-ed25519 AAAAC3Nza... me@laptop"]),
    AfterValidator(_ssh_key_line),
]

VMStatus = Literal["Created", "Starting", "Running", "Stopped", "Restarting", "Paused", "Failed"]


class VMCreate(CamelModel):
    """A VM request exactly as the original design writes it:
    {"username", "sshKey", "cpu", "memory": "1g", "disk": "4g"}."""

    username: Username
    ssh_key: SshKeyLine
    cpu: float = Field(
        ge=0.01, le=MAX_CPU, examples=[1], description="vCPUs; fractions down to 0.01"
    )
    memory: Size = Field(examples=["1g"], description="RAM, e.g. 512m, 1g, 1.5g")
    disk: Size | None = Field(
        default=None,
        examples=["4g"],
        description="disk size; refused where not enforceable; default: the host's default",
    )


class VMIdBody(CamelModel):
    vm_id: str = Field(pattern=VM_ID_RE.pattern, examples=["3f2a9c0d1e4b5a6f"])


class VMPublic(CamelModel):
    """A VM as an agent answers: the backend reads a provider's agent through this model, so
    every field is bounded (an answer outside it is a `bad_answer`, never stored)."""

    vm_id: str = Field(pattern=VM_ID_RE.pattern)
    username: Username
    ssh_host: str = Field(max_length=253)
    ssh_port: int = Field(ge=1, le=65535)
    ssh_command: str = Field(max_length=512)
    status: VMStatus
    state: str = Field(
        pattern=r"^[a-z]{1,16}$", description="the container engine's own state, for diagnostics"
    )
    cpu: float
    memory: str = Field(pattern=SIZE_TEXT_PATTERN)
    disk: str | None = Field(pattern=SIZE_TEXT_PATTERN)
    created_at: Timestamp
    host_key: HostKeyLine | None = Field(
        default=None,
        description="the VM's SSH host key, '<type> <base64>' (null for VMs made before "
        "agents chose host keys)",
    )
    host_key_fingerprint: str | None = Field(
        default=None, description="SHA256 fingerprint of hostKey, as `ssh-keygen -lf` prints it"
    )
    disk_used_bytes: int | None = Field(
        default=None,
        ge=0,
        le=1 << 62,
        description="bytes the VM has used of its disk quota (what `df` in the VM cannot "
        "show); null when the host cannot tell",
    )

    @model_validator(mode="after")
    def _fingerprint_of_the_key(self) -> VMPublic:
        # An answer whose fingerprint is not its key's is a lie about one of them.
        expected = None if self.host_key is None else parse_host_key(self.host_key).fingerprint
        if self.host_key_fingerprint != expected:
            raise ValueError("hostKeyFingerprint is not the fingerprint of hostKey")
        return self


class VMDeleted(CamelModel):
    vm_id: str
    status: Literal["Deleted"] = "Deleted"


class VMLogs(CamelModel):
    vm_id: str
    logs: str
    until: str | None = Field(
        default=None, description="the time of the last line (send it as `since` next)"
    )


class Capacity(CamelModel):
    cpu: float
    memory: int
    disk: int


IsolationPart = Literal["userns-remap", "firewall", "disk-quota"]


class IsolationReport(CamelModel):
    """How a host keeps its VMs apart (agent/isolation.py): part of `/v1/host`, of the
    signed registration and of every signed heartbeat. `level` is "full" when userns-remap,
    the firewall and the disk quota are all in force, else "weak" and `missing` names them."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel), populate_by_name=True, extra="ignore"
    )

    level: Literal["full", "weak"]
    missing: list[IsolationPart] = Field(default_factory=list, max_length=3)
    userns_remap: bool = False
    firewall: bool = False
    disk_quota: bool = False
    io_limits: bool = Field(default=False, description="each VM's disk I/O is capped")
    smtp_blocked: bool = Field(default=False, description="VMs cannot reach SMTP ports")
    detail: str = Field(default="", max_length=500)


class HostInfo(CamelModel):
    agent_version: str
    engine_version: str
    storage_driver: str
    userns_remap: bool
    disk_quota_supported: bool
    disk_quota_detail: str
    vm_isolation: bool
    vm_isolation_detail: str
    isolation: IsolationReport
    lxcfs_active: bool = Field(description="VMs created now see their own cpu and memory")
    lxcfs_detail: str
    image: str
    image_ready: bool
    ssh_bind: str
    ssh_public_host: str
    ssh_port_range: tuple[int, int]
    capacity: Capacity
    reserved: Capacity
    free: Capacity
    vms: int
    wallet_address: str | None


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "prices", "cpu"], ["query", "limit"]')
    msg: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of both APIs (validation errors included)."""

    detail: str = Field(description="what went wrong and what to do, for people")
    code: str = Field(
        description="stable, for programs: invalid, unauthorized, forbidden, not_found, "
        "conflict, payment_required, unavailable, upstream, internal, or a more specific one",
        examples=["not_found"],
    )
    retry: bool = Field(description="the same request may succeed later unchanged")
    fields: list[FieldError] | None = Field(
        default=None, description="per-field problems of an invalid request"
    )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list. Ask for the next with `?after=<next>`; `next` is null on the
    last page. Cursors are opaque."""

    items: list[T]
    next: str | None = Field(description="cursor of the next page, or null")


# Bounds for ids and counters in paths and queries: what the database columns hold.
MAX_DB_ID = 2_147_483_647
