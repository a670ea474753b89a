"""Database rows (SQLAlchemy 2). API schemas live in backend/schemas.py, never here.

Schema changes only through Alembic migrations (backend/migrations)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from kumulus.core.money import reference_price


class Planck(TypeDecorator[int]):
    """An exact token amount (planck) that holds any u128 and its negative.

    PostgreSQL: NUMERIC(39, 0). SQLite has no exact type that wide (INTEGER is 64-bit and
    silently turns into REAL past it), so the amount is stored as its decimal text and all
    arithmetic on amounts happens in Python integers, never in SQL (no SUM, no `+`)."""

    impl = Numeric(39, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(39, 0, asdecimal=True))

    @staticmethod
    def checked(value: int) -> int:
        """`value` if it is an amount this column can store; TypeError or ValueError if not."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"an amount must be an int of planck, not {type(value).__name__}")
        if abs(value) >= 10**39:
            raise ValueError("amount out of range")
        return value

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = self.checked(value)
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


def planck_column_type() -> TypeEngine[Any]:
    """The type migrations create for Planck columns (the same on each database)."""
    return Numeric(39, 0).with_variant(String(40), "sqlite")


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # "developer" | "provider"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(12))  # shown to recognise a token
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Every token expires (API tokens after settings.api_token_ttl, console sessions
    # sooner); migration 0020 gave the ones from before an expiry.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Issued by a log-in (API or console), not made on purpose: at most `max_sessions` live
    # per account, the least recently used revoked first (backend/quotas.py).
    from_login: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ProviderProfile(Base):
    __tablename__ = "provider_profiles"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), default="")
    contact: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    region: Mapped[str] = mapped_column(String(32), default="")
    wallet_address: Mapped[str | None] = mapped_column(String(64), unique=True)
    # When the wallet above was linked, and from when payouts may go to it: a replaced
    # wallet pays out only after the cool-down (backend/payout_wallet.py); None: at once.
    wallet_linked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wallet_payouts_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Prices new hosts start with, in the chain's smallest unit (planck) per hour.
    price_cpu_hour: Mapped[int | None] = mapped_column(BigInteger)
    price_memory_gib_hour: Mapped[int | None] = mapped_column(BigInteger)
    price_disk_gib_hour: Mapped[int | None] = mapped_column(BigInteger)


class WalletChallenge(Base):
    __tablename__ = "wallet_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HostToken(Base):
    """One-time token a provider gives to a new host's setup to register it."""

    __tablename__ = "host_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    host_id: Mapped[str | None] = mapped_column(String(32))


class Host(Base):
    __tablename__ = "hosts"
    __table_args__ = (
        # The scheduler's walk: best reputation tier first, then the cheapest (ref_price),
        # then the least loaded.
        Index("ix_hosts_tier_price_load", text("rep_tier DESC"), "ref_price", "load"),
        Index(
            "ix_hosts_region_tier_price_load", "region", text("rep_tier DESC"), "ref_price", "load"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    wallet_address: Mapped[str] = mapped_column(String(64), index=True)
    # The host's own sr25519 key (backend/host_keys.py): it signs heartbeats, stats and
    # answers once the wallet delegated it. `host_key_state`: "legacy" (no host key: the
    # wallet signs, hosts set up before host keys), "pending" (registered with the one-time
    # token, not delegated), "delegated", "revoked". Registration sets it explicitly.
    host_key: Mapped[str | None] = mapped_column(String(64))
    host_key_state: Mapped[str] = mapped_column(
        String(16), default="legacy", server_default="legacy"
    )
    # The wallet's signed delegation (wallet -> host key), kept as proof.
    delegation: Mapped[str | None] = mapped_column(Text)
    delegation_signature: Mapped[str | None] = mapped_column(String(200))
    # The delegation's expiry: a delegated host takes new VMs until then (the scheduler's
    # predicate: legacy, or delegated and not expired).
    delegated_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    api_url: Mapped[str] = mapped_column(String(255))
    public_ip: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32), default="")
    cpu: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    disk: Mapped[int] = mapped_column(BigInteger)
    disk_quota: Mapped[bool] = mapped_column(Boolean)
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The signed time of the newest heartbeat stored for the host: a heartbeat must be
    # signed later to be stored (its replay protection; backend/heartbeats.py).
    heartbeat_signed_at: Mapped[float | None] = mapped_column(Float)
    # From the newest heartbeat: the agent's run (a new one at each start) and whether
    # its container engine answered. When either says the agent or its engine came back,
    # the host's VMs' pending intents are tried at once (backend/heartbeats.py).
    agent_run: Mapped[str | None] = mapped_column(String(16))
    engine_up: Mapped[bool | None] = mapped_column(Boolean)
    # Uptime credited in the current hour (`uptime_hour`, hours since the epoch), kept on
    # the row every heartbeat updates anyway; the first heartbeat of a later hour moves it
    # to host_uptime. Readers add it to host_uptime (heartbeats.uptime_by_hour).
    uptime_hour: Mapped[int | None] = mapped_column(BigInteger)
    uptime_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Capacity held by live VMs. Changed only by conditional UPDATEs (scheduler.reserve /
    # release), so concurrent placements can never push it past the capacity above.
    reserved_cpu: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    reserved_memory: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_disk: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Share of cpu + share of memory reserved, kept by the same UPDATEs: indexed, so the
    # scheduler finds the least loaded hosts among thousands without sorting them all.
    load: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Containers the agent reports that the backend does not know (drift), last heartbeat.
    unknown_vms: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a VM pays per hour here (planck): per vCPU, per GiB of memory, per GiB of disk.
    price_cpu_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    price_memory_gib_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    price_disk_gib_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # What the reference VM costs per hour here (kumulus.core.money.reference_price): the
    # scheduler ranks hosts of one tier by it. Set with the unit prices (`set_prices`).
    ref_price: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Why the machine the agent reports (heartbeats) cannot hold the declared capacity, or
    # None. A flagged host is ranked in the lowest tier (backend/reputation.py).
    capacity_problem: Mapped[str | None] = mapped_column(String(300))
    # Whether the host's last signed report (registration, heartbeats) says its VMs are fully
    # isolated (userns-remap, firewall, disk quota); the scheduler places only there unless
    # the developer accepts less. `isolation_problem`: what is missing, for people.
    isolated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    isolation_problem: Mapped[str | None] = mapped_column(String(300))
    # Set by its provider before maintenance: the scheduler places no new VM here, while the
    # VMs already here keep running (and can be stopped and started).
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Reputation (backend/reputation.py): uptime from heartbeats, lease outcomes.
    uptime_24h: Mapped[float | None] = mapped_column(Float)
    uptime_7d: Mapped[float | None] = mapped_column(Float)
    uptime_30d: Mapped[float | None] = mapped_column(Float)
    leases_completed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    leases_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reputation: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
    # floor(reputation * 10): hosts in one tier share VMs by load instead of the single
    # best host taking everything.
    rep_tier: Mapped[int] = mapped_column(Integer, default=5, server_default="5")

    def set_prices(self, cpu: int, memory_gib: int, disk_gib: int) -> None:
        """New unit prices (planck per unit-hour), and the reference price ranked by."""
        self.price_cpu_hour, self.price_memory_gib_hour, self.price_disk_gib_hour = (
            cpu,
            memory_gib,
            disk_gib,
        )
        self.ref_price = reference_price(cpu, memory_gib, disk_gib)


class HostUptime(Base):
    """Seconds a host was heard from (heartbeat gaps up to the TTL), per hour since the epoch,
    for the hours before the one on its host row (`Host.uptime_hour`)."""

    __tablename__ = "host_uptime"

    host_id: Mapped[str] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    up_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Heartbeat(Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_host_time", "host_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # No foreign key: a log written at the fleet's heartbeat rate and pruned by age; a
    # per-row referential check cost half of each batch insert (migration 0027).
    host_id: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signed_at: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class SeenNonce(Base):
    """Nonces of accepted signatures, kept while a replay could still look fresh. The
    primary key makes "first one wins" atomic across backend processes."""

    __tablename__ = "seen_nonces"

    signer: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class SshKey(Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (Index("ux_ssh_keys_account_fp", "account_id", "fingerprint", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VM(Base):
    """A developer's VM. `intended_state` is what they asked; `actual_state` what the agent
    last confirmed. Reservation fields hold what it holds on its host until released."""

    __tablename__ = "vms"
    __table_args__ = (
        Index("ux_vms_account_idem", "account_id", "idempotency_key", unique=True),
        Index("ix_vms_host", "host_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Looked up through ux_vms_account_idem, which starts with it (migration 0032).
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"))
    agent_vm_id: Mapped[str | None] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(32))
    ssh_key: Mapped[str] = mapped_column(Text)
    cpu: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    disk: Mapped[int] = mapped_column(BigInteger)
    region: Mapped[str] = mapped_column(String(32), default="")
    intended_state: Mapped[str] = mapped_column(String(16))  # running | stopped | deleted
    # pending|starting|running|stopping|stopped|failed|missing|deleting|deleted|insufficient_funds
    actual_state: Mapped[str] = mapped_column(String(32))
    reserved: Mapped[bool] = mapped_column(Boolean, default=False)
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    # The VM's SSH host key as its agent reported it when it adopted the VM ("<type>
    # <base64>", checked by core/hostkeys.py) and its fingerprint as the backend computed
    # it; None for VMs made before agents chose host keys.
    host_key: Mapped[str | None] = mapped_column(Text)
    host_key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Bytes the VM has used of its disk quota as its host last reported it (heartbeats,
    # the create answer), and when; None until reported (`df` in the VM cannot show it).
    disk_used: Mapped[int | None] = mapped_column(BigInteger)
    disk_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Prices fixed when the VM was placed (planck per hour per unit), and the most the
    # developer accepted to pay per hour.
    price_cpu_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    price_memory_gib_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    price_disk_gib_hour: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    max_price_hour: Mapped[int | None] = mapped_column(BigInteger)
    # Metering (backend/billing.py): charged up to `metered_until`; `meter_carry` is the
    # sub-planck remainder (planck * milliseconds / hour) carried to the next charge.
    # `accrued` is usage charged against the VM's prepaid hold but not yet posted to the
    # ledger (posted at least hourly and at every renewal, stop, start and delete; never
    # more than the hold). `unfunded_since`: when the hold ran out and could not be renewed.
    metered_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    meter_carry: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    accrued: Mapped[int] = mapped_column(Planck, default=0, server_default="0")
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unfunded_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the stop its host has not carried out yet was asked for (None once counted as a
    # failed lease, or when started again): a host that keeps such a VM running past a grace
    # period fails the lease (backend/vms.py, send_pending_stop).
    stop_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Intents not confirmed by the host yet (backend/converge.py): a start asked for, and
    # when the next try of whatever is pending may be made (None: now) after how many
    # failed ones (exponential backoff).
    start_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    converge_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    converge_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    create_refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The developer accepts a host without full isolation (placement and re-placement).
    allow_weak_isolation: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """One leg of a double-entry transaction (backend/ledger.py). The legs sharing a
    `txn_id` sum to zero within each money class (deposit-funded, promotional), so money is
    never created, lost or turned from promotional into withdrawable.

    A leg's account is (`account_type`, key): the key is the VM id (`vm_id`) for the hold
    accounts and `account_id` otherwise (None for the platform's and the chain's)."""

    __tablename__ = "ledger_entries"
    # No index on txn_id (migration 0033): nothing looks entries up by transaction, and
    # every entry paid for one.
    __table_args__ = (Index("ix_ledger_account", "account_type", "account_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    txn_id: Mapped[str] = mapped_column(String(32))
    account_type: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Planck)  # + credit, - debit
    kind: Mapped[str] = mapped_column(String(16))  # usage | fee | credit | deposit | payout
    vm_id: Mapped[str | None] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Balance(Base):
    """The running balance of one ledger account, updated in the same transaction as every
    posting to it (so no balance is ever a SUM over the ledger). `account_key` is the
    account id, the VM id for holds, or "" for the platform's and the chain's accounts."""

    __tablename__ = "balances"

    account_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    amount: Mapped[int] = mapped_column(Planck, default=0, server_default="0")


class DeveloperWallet(Base):
    """A wallet a developer proved they own (signed challenge): its transfers to the
    platform's deposit address credit their balance."""

    __tablename__ = "developer_wallets"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChainCursor(Base):
    """How far a chain watcher got (last finalized block fully processed)."""

    __tablename__ = "chain_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    # Which chain (its genesis hash) and which block (its hash): a chain restarted from
    # genesis reuses block numbers, so the number alone does not say where we are.
    genesis_hash: Mapped[str | None] = mapped_column(String(66))
    block_hash: Mapped[str | None] = mapped_column(String(66))


class ChainDeposit(Base):
    """Every transfer seen to the deposit address, credited or not. The primary key (block,
    event) makes crediting exactly-once across restarts and re-scans."""

    __tablename__ = "chain_deposits"

    block_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    event_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(Planck)  # a u128 on chain
    account_id: Mapped[int | None] = mapped_column(Integer)  # None: sender not linked
    txn_id: Mapped[str | None] = mapped_column(String(32))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    genesis_hash: Mapped[str | None] = mapped_column(String(66))  # the chain it landed on


class Payout(Base):
    """A provider payout. Written `pending` (ledger debited) before anything is sent; given a
    nonce of the payout key when submitted, so a re-submission after a crash can be included
    at most once; reconciled with the chain by that nonce."""

    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(Planck)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|submitted|paid|failed
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    from_block: Mapped[int | None] = mapped_column(BigInteger)  # finalized head at submission
    extrinsic_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    fee: Mapped[int | None] = mapped_column(Planck)
    error: Mapped[str | None] = mapped_column(Text)
    txn_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when submitted: the chain its nonce belongs to, and when (the daily payout cap
    # counts what was sent in the last 24 hours).
    genesis_hash: Mapped[str | None] = mapped_column(String(66))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class Anchor(Base):
    """A Merkle root of a period's usage records and reputation scores, put on chain with
    System.remark_with_event so anyone can check a record against it."""

    __tablename__ = "anchors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    root: Mapped[str] = mapped_column(String(64))
    leaf_count: Mapped[int] = mapped_column(Integer)
    # Highest ledger entry id digested: the next anchor starts after it (ids, not clocks,
    # so an entry stamped early but committed late is never skipped).
    max_entry_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16))  # pending | anchored
    block_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    extrinsic_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    genesis_hash: Mapped[str | None] = mapped_column(String(66))  # the chain it went on
    # The anchor key's nonce its remark is sent with (fixed before the first send, so the
    # chain includes at most one copy) and the finalized block before that send.
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    from_block: Mapped[int | None] = mapped_column(BigInteger)


class AnchorLeaf(Base):
    """A record under an anchor, kept to hand out inclusion proofs."""

    __tablename__ = "anchor_leaves"

    anchor_id: Mapped[int] = mapped_column(
        ForeignKey("anchors.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Who may ask for this record's proof (developer, provider); None: anyone logged in.
    account_id: Mapped[int | None] = mapped_column(Integer, index=True)
    other_account_id: Mapped[int | None] = mapped_column(Integer, index=True)


class WorkerLease(Base):
    """A job only one backend process may run at a time (e.g. sending payouts, whose nonces
    must come from one sender). Held by `owner` until `expires_at` (epoch seconds);
    `generation` grows each time the lease is taken anew (backend/leases.py), so a holder
    that lost it cannot renew it or commit under it (backend/lease_fence.py)."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class SettlementState(Base):
    """Small named facts about settlement, shared by all backend processes: the pinned
    chain (`genesis`) and why settlement is stopped or waiting (`blocked:chain`,
    `blocked:breaker`, `waiting:float`, `waiting:cap`). A row present is a state in force;
    see backend/settlement_state.py."""

    __tablename__ = "settlement_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PromoPayoutDay(Base):
    """What the platform paid, one UTC day, out of its fees for providers' promotional
    earnings (backend/promo_payouts.py): the day's promo budget is spent against it. Written
    only under the lock of the platform's fee balance, with the ledger postings it sums."""

    __tablename__ = "promo_payout_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[int] = mapped_column(Planck)


class PromoPayout(Base):
    """What one provider's promotional earnings were paid on one UTC day (the per-provider
    daily cap is spent against it); same lock and transaction as PromoPayoutDay."""

    __tablename__ = "promo_payouts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True, index=True)
    amount: Mapped[int] = mapped_column(Planck)


class RateCounter(Base):
    """One fixed window of a rate limit shared by every backend process (per-account login
    failures and sign-ups; backend/rate_counters.py). `key` is the SHA-256 of the limit's
    key, so the table holds no email addresses; rows past `expires_at` are dead (the next
    hit restarts them) and pruned."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class BackendKey(Base):
    """The public address of each of the platform's keys (`backend`, `payout`, `anchor`,
    `deposit`), recorded by the first backend process that used it: every replica must hold
    the same keys, and one that does not refuses to start (backend/backend_keys.py)."""

    __tablename__ = "backend_keys"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
