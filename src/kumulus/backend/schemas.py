"""Backend API schemas (requests and responses). Rows are in models.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, Field, field_validator

from kumulus.core.http import MAX_RELAYED_DETAIL
from kumulus.core.schemas import CamelModel, Size, SshKeyLine, Timestamp, Username
from kumulus.core.sizes import format_size
from kumulus.core.untrusted_text import PrintableLine, printable_line

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
Role = Literal["developer", "provider"]
# A token amount as people write it ("0.05"); kept as text so no float rounding creeps in.
Price = Annotated[str, Field(pattern=r"^\d{1,12}(\.\d{1,18})?$", max_length=32, examples=["0.05"])]
# The largest VM one may ask for. With cpu <= 256 they bound what a VM can cost per hour at
# a given unit price, and so what one VM can cost.
MAX_VM_MEMORY = 4 << 40  # 4 TiB
MAX_VM_DISK = 64 << 40  # 64 TiB


class SignupRequest(CamelModel):
    email: str = Field(max_length=254)
    password: str = Field(min_length=10, max_length=256)
    role: Role

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip().lower()
        if not _EMAIL_RE.fullmatch(value):
            raise ValueError("not a valid email address")
        return value


class LoginRequest(CamelModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)
    token_name: str = Field(default="login", max_length=64)


class AccountPublic(CamelModel):
    id: int
    email: str
    role: Role
    created_at: Timestamp


class TokenCreate(CamelModel):
    name: str = Field(min_length=1, max_length=64)


class TokenPublic(CamelModel):
    id: int
    name: str
    prefix: str
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None
    expires_at: Timestamp = Field(description="the token stops working at this time")


class TokenCreated(TokenPublic):
    token: str = Field(description="shown once; only its hash is stored")


class LoginResponse(CamelModel):
    account: AccountPublic
    token: str
    expires_at: Timestamp = Field(description="the token stops working at this time")


class PasswordChange(CamelModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=10, max_length=256)


class Revoked(CamelModel):
    revoked: int = Field(description="how many tokens and console sessions were revoked")


class Prices(CamelModel):
    """Unit prices in tokens per hour; a VM pays cpu * vCPU + GiB memory * memory + GiB
    disk * disk (stopped VMs: disk only)."""

    cpu: Price = Field(description="per vCPU-hour", examples=["0.01"])
    memory_gib: Price = Field(description="per GiB-of-memory-hour", examples=["0.005"])
    disk_gib: Price = Field(description="per GiB-of-disk-hour", examples=["0.0001"])


class ProviderProfileIn(CamelModel):
    # Shown to others (consoles, logs): one line of printable text.
    name: PrintableLine = Field(default="", max_length=100)
    contact: PrintableLine = Field(default="", max_length=200)
    country: str = Field(default="", pattern=r"^([A-Z]{2})?$", description="ISO 3166 alpha-2")
    region: str = Field(default="", pattern=r"^[a-z0-9-]{0,32}$", examples=["eu", "us-east"])
    prices: Prices | None = Field(
        default=None, description="what hosts registered from now on charge per hour"
    )


class ProviderProfileOut(ProviderProfileIn):
    wallet_address: str | None
    wallet_payouts_from: Timestamp | None = Field(
        default=None,
        description="set while a replaced wallet's cool-down runs: payouts wait until then",
    )


class HostUpdate(CamelModel):
    """What PATCH changes on a host; a field left out stays as it is."""

    prices: Prices | None = None
    draining: bool | None = Field(
        default=None,
        description="true: take no new VMs (those there keep running); false: take VMs again",
    )


class WalletChallengeOut(CamelModel):
    challenge_id: int
    message: str = Field(description="sign exactly this text with the wallet (signRaw)")
    expires_at: Timestamp


class WalletLinkIn(CamelModel):
    challenge_id: int
    address: str = Field(max_length=64)
    signature: str = Field(max_length=200)


class ProviderWalletLinkIn(WalletLinkIn):
    password: str | None = Field(
        default=None,
        max_length=256,
        description="the account's password: required to replace a linked payout wallet",
    )


class HostTokenCreated(CamelModel):
    token: str = Field(description="one-time; give it to the new host's setup")
    expires_at: Timestamp


class HostTokenInfoIn(CamelModel):
    provider_token: str = Field(min_length=1, max_length=128)


class HostTokenInfo(CamelModel):
    wallet_address: str = Field(description="the wallet the new host must sign with")
    expires_at: Timestamp


class HostPublic(CamelModel):
    id: str
    status: Literal["online", "offline"]
    api_url: str
    public_ip: str
    region: str
    cpu: float
    memory: int
    disk: int
    disk_quota: bool
    agent_version: str
    registered_at: Timestamp
    last_heartbeat_at: Timestamp | None
    prices: Prices
    reserved_cpu: float
    reserved_memory: int
    reserved_disk: int
    reputation: float
    uptime_24h: float | None = Field(
        serialization_alias="uptime24h", validation_alias=AliasChoices("uptime24h", "uptime_24h")
    )
    uptime_7d: float | None = Field(
        serialization_alias="uptime7d", validation_alias=AliasChoices("uptime7d", "uptime_7d")
    )
    uptime_30d: float | None = Field(
        serialization_alias="uptime30d", validation_alias=AliasChoices("uptime30d", "uptime_30d")
    )
    leases_completed: int
    leases_failed: int
    capacity_problem: str | None = Field(
        default=None,
        description="why the machine the agent reports cannot hold the declared capacity; "
        "such a host is ranked in the lowest reputation tier until it agrees",
    )
    host_key: str | None = None
    host_key_state: HostKeyState = "legacy"
    delegated_until: Timestamp | None = None
    isolated: bool = Field(
        default=False,
        description="its signed reports say VMs there are fully isolated (userns-remap, "
        "firewall, disk quota); only such hosts get VMs unless a developer accepts less",
    )
    isolation_problem: str | None = Field(default=None, description="what is missing")
    draining: bool = Field(
        default=False,
        description="its provider stopped new placements here; its VMs keep running",
    )


class HostRegistered(CamelModel):
    host_id: str
    backend_address: str = Field(description="the backend's sr25519 address: agents pin it")
    heartbeat_path: str
    host_key_state: HostKeyState = Field(
        description="pending: the provider's wallet must delegate the key that signed this"
    )


HostKeyState = Literal["legacy", "pending", "delegated", "revoked"]


class HostKeyOut(CamelModel):
    host_id: str
    host_key: str | None = Field(description="the host's own sr25519 address (None: legacy)")
    host_key_state: HostKeyState
    delegated_until: Timestamp | None
    schedulable: bool = Field(description="whether its keys let the host take new VMs")


class DelegationOut(HostKeyOut):
    message: str | None = Field(
        description="sign exactly this text with the provider's wallet (signRaw, or "
        "`kumulus wallet sign`) to delegate the host key; None when there is no key to delegate"
    )


class DelegationIn(CamelModel):
    message: str = Field(max_length=300)
    signature: str = Field(max_length=200)


class Accepted(CamelModel):
    ok: bool = True


class SshKeyIn(CamelModel):
    name: str = Field(min_length=1, max_length=64)
    public_key: SshKeyLine = Field(description="one line of a .pub file")


class SshKeyOut(CamelModel):
    id: int
    name: str
    fingerprint: str
    public_key: str
    created_at: Timestamp


class VMCreateIn(CamelModel):
    """Requirements for a VM; the scheduler finds a host that fits."""

    name: str = Field(default="vm", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    username: Username
    ssh_key_id: int | None = Field(default=None, description="one of your saved keys")
    ssh_key: SshKeyLine | None = Field(default=None, description="or a key line")
    cpu: float = Field(ge=0.01, le=256, examples=[1])
    memory: Size = Field(examples=["1g"])
    disk: Size = Field(default="10g", examples=["10g"], validate_default=True)
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")
    max_price_per_hour: Price | None = Field(
        default=None,
        description="most this VM may cost per hour while running, in tokens",
        examples=["0.05"],
    )
    allow_weak_isolation: bool = Field(
        default=False,
        description="also accept a host that does not fully isolate its VMs (no "
        "userns-remap, firewall or disk quota): its provider, or a VM that escapes, could "
        "reach your VM more easily",
    )

    @field_validator("memory")
    @classmethod
    def _memory_bound(cls, value: int) -> int:
        if value > MAX_VM_MEMORY:
            raise ValueError(f"at most {format_size(MAX_VM_MEMORY)}")
        return value

    @field_validator("disk")
    @classmethod
    def _disk_bound(cls, value: int) -> int:
        if value > MAX_VM_DISK:
            raise ValueError(f"at most {format_size(MAX_VM_DISK)}")
        return value


def _at_most(most: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value > most:
            raise ValueError(f"at most {format_size(most)}")
        return value

    return check


class VMQuoteIn(CamelModel):
    """The size (and region, and optionally a most-per-hour) of a VM to price."""

    cpu: float = Field(ge=0.01, le=256, examples=[1])
    memory: Annotated[Size, AfterValidator(_at_most(MAX_VM_MEMORY))] = Field(examples=["1g"])
    disk: Annotated[Size, AfterValidator(_at_most(MAX_VM_DISK))] = Field(
        default="10g", examples=["10g"], validate_default=True
    )
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")
    max_price_per_hour: Price | None = Field(default=None, examples=["0.05"])
    allow_weak_isolation: bool = Field(
        default=False,
        description="also accept a host that does not fully isolate its VMs (no "
        "userns-remap, firewall or disk quota): its provider, or a VM that escapes, could "
        "reach your VM more easily",
    )


class VMQuoteOut(CamelModel):
    """Amounts in tokens, as plain numbers (`symbol` names the token)."""

    price_per_hour: str = Field(
        description="what this VM would pay per hour while running if created now: the "
        "price on the host the scheduler would choose",
        examples=["0.016"],
    )
    host_id: str = Field(description="that host")
    max_price_per_hour: str = Field(
        description="the price plus the platform's quote tolerance: send it as the create's "
        "maxPricePerHour so the VM is placed only at about the price shown"
    )
    symbol: str = Field(examples=["UNIT"])


VMState = Literal[
    "pending",
    "starting",
    "running",
    "stopped",
    "failed",
    "missing",
    "unreachable",
    "deleted",
    "deleting",
    "restarting",
    "stopping",  # wanted stopped; the host has not confirmed it yet
    "insufficient_funds",
]


class VMOut(CamelModel):
    id: str
    name: str
    username: str
    cpu: float
    memory: str
    disk: str
    region: str
    host_id: str | None
    intended_state: str
    actual_state: VMState
    ssh_host: str | None = Field(
        description="an IP address or DNS name; null while unknown, or when not valid"
    )
    ssh_port: int | None
    ssh_command: str | None = Field(
        description="ready to paste: `ssh -p PORT USER@HOST`, built from validated parts; "
        "a convenience that does not check the host key (`kumulus vm ssh` does)"
    )
    ssh_problem: str | None = Field(
        default=None, description="why there is no ssh address although the VM has a host"
    )
    host_key: str | None = Field(
        default=None,
        description="the VM's SSH host key, '<type> <base64>', as its host reported it when "
        "it made the VM; null for VMs made before hosts reported host keys",
    )
    host_key_fingerprint: str | None = Field(
        default=None,
        description="SHA256 fingerprint of hostKey, as `ssh-keygen -lf` prints it, computed "
        "by the platform from the key",
    )
    disk_used_bytes: int | None = Field(
        default=None,
        description="bytes the VM has used of its disk (`disk`), as its host last reported "
        "it; null until reported. `df` inside the VM shows the host's filesystem, not this",
    )
    disk_used_at: Timestamp | None = Field(
        default=None, description="when the host measured diskUsedBytes"
    )
    failure_reason: str | None = Field(
        description="why the VM failed; it may quote the host's agent (one line, bounded)"
    )
    price_per_hour: str | None = Field(description="while running, fixed at placement")
    cost_so_far: str = Field(
        default="0",
        description="tokens the VM has cost so far: usage posted to the ledger, accrued on "
        "its prepaid hold, and the seconds since it was last metered",
    )
    delete_after: Timestamp | None = Field(
        default=None,
        description="set while the VM's disk is no longer paid for: it is deleted then "
        "unless its developer deposits (see fundsWarning)",
    )
    funds_warning: str | None = Field(default=None, description="why deleteAfter is set")
    created_at: Timestamp

    @field_validator("failure_reason")
    @classmethod
    def _relayed(cls, value: str | None) -> str | None:
        # It may quote a provider's agent: cleaned when read from the agent (core/http.py),
        # and again here for rows stored before that was done.
        return None if value is None else printable_line(value, MAX_RELAYED_DETAIL)


class VMLogsOut(CamelModel):
    id: str
    logs: str
    until: str | None = Field(
        default=None,
        description="when the last line returned was written (the host's clock, RFC 3339); "
        "send it back as `since` for only the lines after it (null: the host gave no times)",
    )


class LedgerEntryOut(CamelModel):
    id: int
    txn_id: str
    amount: str
    kind: str
    account: str = Field(
        description="developer | promo | hold | hold_promo (developers); provider | "
        "provider_promo (providers): which of the account's ledger accounts moved"
    )
    vm_id: str | None
    memo: str
    created_at: Timestamp


class BillingOut(CamelModel):
    balance: str = Field(
        description="tokens; developers: what they can spend (deposits and promotional "
        "credit not held for a VM); providers: what they can withdraw"
    )
    balance_planck: int
    held: str = Field(description="developers: set aside by the prepaid holds of their VMs")
    promo: str = Field(
        description="developers: promotional credit left (part of balance); providers: "
        "earnings paid with promotional credit, not withdrawable unless the platform pays "
        "them from its promo budget (see promoPaid)"
    )
    promo_paid: str = Field(
        description="providers: promotional earnings the platform paid from its fees so "
        "far (moved into the withdrawable balance); developers: 0"
    )
    promo_daily_cap: str = Field(
        description="providers: the most of their promotional earnings the platform pays "
        "per UTC day (0: it pays none)"
    )
    per_hour: str = Field(description="developers: spending now; providers: earning now")
    accruing: str = Field(
        default="0",
        description="providers: their share of what their hosts' VMs were charged since "
        "it was last posted to the ledger (posted at least every "
        "KUMULUS_BACKEND_LEDGER_POST_INTERVAL and at every stop, start and delete; "
        "withdrawable, or promotional, from then on); developers: 0",
    )
    hours_left: float | None = Field(description="developers: runway at the current spend")
    warning: str | None
    settlement: str = Field(description="on-chain settlement: on | off")
    entries: list[LedgerEntryOut]


class AnchoredRecordOut(CamelModel):
    anchor_id: int
    index: int
    block_number: int | None
    record: dict[str, Any] = Field(description="the leaf as digested (see kumulus verify)")


class WalletOut(CamelModel):
    address: str


class DepositInfo(CamelModel):
    address: str = Field(description="transfer tokens here from a linked wallet")
    chain_url: str
    ss58_format: int
    token_decimals: int
    token_symbol: str


class PayoutIn(CamelModel):
    amount: Price | None = Field(default=None, description="tokens; default: all earnings")


class PayoutOut(CamelModel):
    id: int
    address: str
    amount: str
    status: str
    extrinsic_hash: str | None
    block_number: int | None
    error: str | None
    created_at: Timestamp
