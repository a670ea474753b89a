"""Settings, one pydantic-settings object per process, from `KUMULUS_*` variables.

Secrets are never settings values: settings name the 0600 files they live in.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import limits
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kumulus import __version__
from kumulus.core.hostnames import validate_public_host
from kumulus.core.money import INT64_MAX, largest_charge, parse_amount
from kumulus.core.signing import SignatureError, public_key_of, read_secret_file
from kumulus.core.sizes import parse_size

DEFAULT_STATE_DIR = Path("/var/lib/kumulus")


class AgentSettings(BaseSettings):
    """Everything the provider agent needs. Environment: KUMULUS_AGENT_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="KUMULUS_AGENT_", extra="ignore")

    state_dir: Path = DEFAULT_STATE_DIR / "agent"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    docker_host: str | None = None  # e.g. unix:///run/docker.sock; default: DOCKER_HOST / local

    image: str = f"kumulus/vm-base:{__version__}"

    # Where VM SSH ports are published, and the name/IP developers are told to ssh to.
    ssh_bind: str = "0.0.0.0"  # noqa: S104 - developers must reach VMs; the range is dedicated
    ssh_public_host: str | None = None
    ssh_port_min: int = Field(default=2200, ge=1024, le=65535)
    ssh_port_max: int = Field(default=2999, ge=1024, le=65535)
    ssh_ready_timeout: float = Field(default=30.0, gt=0)

    # Capacity offered to Kumulus; None = measured from the host at start.
    cpu_capacity: float | None = Field(default=None, gt=0)
    memory_capacity: str | None = None
    disk_capacity: str | None = None
    memory_reserve: str = "512m"  # kept for the host itself when capacity is measured

    pids_limit: int = Field(default=512, ge=32)
    min_memory: str = "64m"
    min_disk: str = "1g"
    default_disk: str = "10g"  # for requests without a disk size, where it is enforceable
    firewall: bool = True  # isolate VMs from the host and private networks with iptables
    # Creates are refused while userns-remap, the firewall or the disk quota is missing
    # (agent/isolation.py); a provider who accepts that risk for its developers says so here.
    allow_weak_isolation: bool = False
    allow_smtp: bool = False  # VMs may open connections to ports 25, 465 and 587
    # Disk I/O caps per VM (agent/io_limits.py): per vCPU plus per GiB of disk, for reads
    # and writes each, bytes/s and operations/s.
    io_limits: bool = True
    io_bps_per_cpu: str = "50m"
    io_bps_per_disk_gib: str = "2m"
    io_iops_per_cpu: int = Field(default=500, ge=1)
    io_iops_per_disk_gib: int = Field(default=20, ge=0)
    guard_interval: float = Field(default=30.0, gt=0)  # re-check isolation and disk limits
    # lxcfs's mount point: VMs see their own cpu and memory through it when it answers.
    lxcfs_dir: Path = Path("/var/lib/lxcfs")
    lxcfs_interval: float = Field(default=10.0, gt=0)  # look for VMs an lxcfs restart broke
    # How often to try removing failed creates' VMs the engine could not remove at once.
    leftovers_interval: float = Field(default=5.0, gt=0)

    backend_url: str | None = None
    stats_interval: float = Field(default=10.0, gt=0)
    signature_max_skew: float = Field(default=60.0, gt=0)
    # Request bodies larger than this are answered 413 before any route, authentication
    # or parsing sees them (core/body_limit.py). A create is a few hundred bytes.
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)

    @field_validator("ssh_bind")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        ip_address(value)
        return value

    @field_validator("io_bps_per_cpu", "io_bps_per_disk_gib")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_size(value)  # refuse to start with a rate that is not a size
        return value

    @field_validator("ssh_public_host")
    @classmethod
    def _valid_public_host(cls, value: str | None) -> str | None:
        # Developers get it in the ssh line they run: refuse to start with anything but an
        # IP address or a DNS name.
        return None if value is None else validate_public_host(value)

    @model_validator(mode="after")
    def _port_range(self) -> AgentSettings:
        if self.ssh_port_min > self.ssh_port_max:
            raise ValueError("ssh_port_min must be <= ssh_port_max")
        return self

    # Secrets and trust anchors live in files; by default under state_dir.
    admin_token_file: Path | None = None
    backend_key_file: Path | None = None  # ss58 address of the pinned backend
    mnemonic_file: Path | None = None  # the provider's wallet mnemonic (0600; legacy hosts)
    host_key_file: Path | None = None  # this host's own sr25519 key, a mnemonic (0600)
    # GET /metrics answers loopback callers, and others presenting the token in this file
    # (`Authorization: Bearer ...`; core/metrics_access.py). None: loopback only.
    metrics_token_file: Path | None = None

    @model_validator(mode="after")
    def _default_files(self) -> AgentSettings:
        if self.admin_token_file is None:
            self.admin_token_file = self.state_dir / "admin-token"
        if self.backend_key_file is None:
            self.backend_key_file = self.state_dir / "backend-address"
        if self.mnemonic_file is None:
            self.mnemonic_file = self.state_dir / "wallet-mnemonic"
        if self.host_key_file is None:
            self.host_key_file = self.state_dir / "host-key"
        return self

    @property
    def token_path(self) -> Path:
        assert self.admin_token_file is not None
        return self.admin_token_file

    @property
    def backend_key_path(self) -> Path:
        assert self.backend_key_file is not None
        return self.backend_key_file

    @property
    def mnemonic_path(self) -> Path:
        assert self.mnemonic_file is not None
        return self.mnemonic_file

    @property
    def host_key_path(self) -> Path:
        assert self.host_key_file is not None
        return self.host_key_file


class BackendSettings(BaseSettings):
    """The backend service. Environment: KUMULUS_BACKEND_<NAME>; the database also from
    KUMULUS_DATABASE_URL (SQLite file under data_dir when unset)."""

    model_config = SettingsConfigDict(env_prefix="KUMULUS_BACKEND_", extra="ignore")

    data_dir: Path = DEFAULT_STATE_DIR / "backend"
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KUMULUS_DATABASE_URL", "KUMULUS_BACKEND_DATABASE_URL"),
    )
    # The database URL from a file (owner-only, e.g. a systemd credential), so that its
    # password is in no process's environment; KUMULUS_DATABASE_URL wins when both are set.
    database_url_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None  # how agents and browsers reach this backend
    key_file: Path | None = None  # the backend's own sr25519 mnemonic (0600); made on start
    heartbeat_ttl: float = Field(default=30.0, gt=0)  # silence after which a host is offline
    # Request bodies larger than this are answered 413 before any route, authentication or
    # parsing sees them (core/body_limit.py); heartbeats: `heartbeat_max_bytes` (below) plus
    # the envelope around the payload.
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)
    # Bodies anyone may send without credentials, parsed on the event loop before any
    # check can refuse them (sign-up, log-in, token info, a host key's delegation: a few
    # hundred bytes; core/auth_first.ungated_body_paths), and the
    # consoles' forms (the largest: an SSH key of 16,384 characters, percent-encoded).
    # 1 MiB held the event loop 96 ms as JSON and 216 ms as a form; 16 KiB and 64 KiB
    # bound that to about 1.5 and 14 ms.
    anonymous_max_body_bytes: int = Field(default=16 << 10, ge=1024, le=1 << 20)
    console_max_body_bytes: int = Field(default=64 << 10, ge=1024, le=1 << 20)
    # Heartbeats are verified and stored on threads of their own, never waiting behind the
    # threads other routes use (a flood of slow requests cannot make hosts look offline).
    # Their work (sr25519, parsing) holds the GIL and never waits on I/O, so more threads
    # only add switching: 2 (bench/heartbeats, 3 processes, 5 runs each: 8 threads
    # 4,662-5,160/s at 268-284 us of handler CPU per heartbeat, 2 threads 4,745-6,100/s at
    # 219-287 us). More processes (replicas) add verification in parallel.
    heartbeat_threads: int = Field(default=2, ge=1, le=256)
    # Calls to providers' agents (kumulus.client.AgentClient): each ends within
    # `agent_call_deadline` seconds whatever the agent does (at most 90: how long a
    # converge worker may hold a VM per call, backend/converge.py), reads at most
    # `agent_answer_max_bytes` of an answer, and at most `agent_calls_per_host` run at
    # once per host and process (more wait `agent_queue_wait` seconds, then fail as busy).
    # Agents' `apiUrl`s must resolve to public addresses, checked against the address
    # each connection dials, unless `allow_private_agents` (`kumulus up`, tests: agents on
    # this machine or a private network the operator trusts).
    agent_call_deadline: float = Field(default=90.0, gt=0, le=90)
    agent_answer_max_bytes: int = Field(default=8 << 20, ge=64 << 10, le=256 << 20)
    agent_calls_per_host: int = Field(default=4, ge=1, le=256)
    agent_queue_wait: float = Field(default=5.0, ge=0, le=90)
    allow_private_agents: bool = False
    signature_max_skew: float = Field(default=60.0, gt=0)
    challenge_ttl: float = Field(default=600.0, gt=0)
    host_token_ttl: float = Field(default=24 * 3600.0, gt=0)
    # Accounts (backend/accounts.py): API tokens from log-in or `POST /v1/tokens` expire
    # after `api_token_ttl` seconds (90 days; console sessions after 7 days or this, the
    # sooner). Replacing a linked payout wallet needs the password and pays out to the new
    # wallet only after `wallet_cooldown` seconds; payouts wait until then (payout_wallet.py).
    api_token_ttl: float = Field(default=90 * 86400.0, ge=60, le=10 * 365 * 86400.0)
    wallet_cooldown: float = Field(default=24 * 3600.0, ge=0, le=30 * 86400.0)
    # Host names the backend answers to when `public_url` is set, besides that URL's host
    # and the loopback names: requests naming another Host get 400.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Hosts: the most capacity one host may declare (422 beyond, at registration). A
    # provider's own inventory proves nothing, and without a cap `cpu=1e9` made a host look
    # empty forever, so the scheduler sent it everything. Sizes as in "4t".
    max_host_cpu: float = Field(default=512.0, gt=0)
    max_host_memory: str = "4t"
    max_host_disk: str = "64t"
    # Quotes (console, `kumulus vm create`): a create carries maxPricePerHour = the quoted
    # price plus this share (basis points, 1000 = 10%) unless the developer sets one, so the
    # price may move a little between quote and placement, never far.
    quote_tolerance_bps: int = Field(default=1000, ge=0, le=100_000)
    # Money: amounts are planck (the chain's smallest unit); decimals/symbol are for people.
    token_decimals: int = Field(default=12, ge=0, le=30)
    token_symbol: str = Field(default="UNIT", pattern=r"^[A-Za-z]{1,12}$")
    # Prices of hosts whose provider set none (planck per hour): 0.01 per vCPU,
    # 0.005 per GiB of memory, 0.0001 per GiB of disk, with 12 decimals.
    default_price_cpu_hour: int = Field(default=10_000_000_000, ge=0)
    default_price_memory_gib_hour: int = Field(default=5_000_000_000, ge=0)
    default_price_disk_gib_hour: int = Field(default=100_000_000, ge=0)
    # Billing (backend/billing.py): the platform keeps `platform_fee_bps` / 10,000 of each
    # charge. New developers get `signup_credit` tokens of promotional credit (spendable,
    # never withdrawable by anyone; 0 on a production backend, `kumulus up` gives 10). A VM
    # runs on a prepaid hold of `hold_window` seconds at its price, renewed as it is used
    # and posted to the ledger every `ledger_post_interval` seconds at most; a stopped VM
    # whose disk can no longer be paid for is deleted after `unfunded_grace` seconds.
    platform_fee_bps: int = Field(default=1000, ge=0, le=10_000)
    signup_credit: str = Field(default="0", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    hold_window: float = Field(default=600.0, ge=60, le=7 * 86400)
    ledger_post_interval: float = Field(default=3600.0, gt=0, le=86400)
    unfunded_grace: float = Field(default=7 * 86400.0, ge=0)
    low_balance_hours: float = Field(default=24.0, ge=0)  # warn below this much runway
    # On-chain settlement (off without a chain URL). Deposits land on their own address:
    # the key in `deposit_key_file` (0600; made on first start), or `deposit_address`, a
    # cold address whose key is not on the backend. Payouts go out from the key in
    # `payout_key_file` (0600; made on first start), a hot wallet holding `payout_float`
    # tokens, topped up from the deposit key (job payout-float); at most `payout_daily_cap`
    # tokens leave it in any 24 hours (a payout over it waits).
    chain_url: str | None = None
    ss58_format: int = Field(default=42, ge=0, le=16383)
    # GET /metrics answers loopback callers, and others presenting the token in this file
    # (`Authorization: Bearer ...`; core/metrics_access.py). None: loopback only.
    metrics_token_file: Path | None = None
    payout_key_file: Path | None = None
    deposit_key_file: Path | None = None
    deposit_address: str | None = None
    payout_float: str = Field(default="100", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    payout_daily_cap: str = Field(default="1000", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    payout_minimum: str = Field(default="1", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    payout_interval: float = Field(default=86400.0, gt=0)  # scheduled payouts of earnings
    # Promotional earnings (backend/promo_payouts.py) are paid, if at all, out of the
    # platform's fees: at most `promo_budget` tokens per UTC day across all providers and
    # `promo_payout_daily_cap` per provider per UTC day. Either at 0 (the default): never.
    promo_budget: str = Field(default="0", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    promo_payout_daily_cap: str = Field(default="0", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    # Usage and reputation digests go on chain every `anchor_interval` seconds, signed by
    # the key in `anchor_key_file` (0600; made on first start; needs a little for fees).
    anchor_key_file: Path | None = None
    anchor_interval: float = Field(default=3600.0, gt=0)
    # Background jobs (backend/jobs/), each on its own thread so one that fails or hangs
    # never holds up another: meter (and enforce), deletes, prune, deposits, payouts and
    # anchors run every `maintenance_interval` seconds; reputation once per
    # `reputation_interval` and scheduled payouts once per `payout_interval` across all
    # backend processes. `job_intervals` / `job_timeouts` (JSON objects, e.g. {"meter": 5})
    # override the interval of a frequent job and the timeout (default `job_timeout`) of any:
    # a run longer than its timeout is logged as an overrun, and an exclusive job's lease
    # is no longer renewed after it. An exclusive job's lease lasts `job_lease_ttl`
    # seconds and its holder renews it while the run goes on: a replica that dies holds
    # its jobs for at most that long.
    maintenance_interval: float = Field(default=15.0, gt=0)
    # A new intent is left to the converge worker of the process that recorded it for this
    # long before the jobs (on any replica) try it too; the process renews it every third
    # of that while its worker holds the intent (queued or calling the host), so a replica
    # killed mid-call leaves its intents to the others this long after its last renewal.
    converge_in_flight: float = Field(default=30.0, gt=0)
    # A created VM row that nothing placed this long after its creation (the replica
    # handling its request died between the row's commit and its placement, and the client
    # never retried with the same Idempotency-Key) is retired by the `creates` job: deleted
    # with the reason, nothing held or charged. Far longer than a placement takes.
    unplaced_create_grace: float = Field(default=120.0, gt=0)
    # PostgreSQL connections of one process: `db_pool_size` kept, `db_max_overflow` more
    # under load. Replicas x (both) must stay under the server's max_connections.
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)
    reputation_interval: float = Field(default=300.0, gt=0)
    heartbeat_retention_hours: float = Field(default=48.0, gt=0)
    job_timeout: float = Field(default=300.0, gt=0)
    job_lease_ttl: float = Field(default=30.0, gt=0)
    job_intervals: dict[str, float] = Field(default_factory=dict)
    job_timeouts: dict[str, float] = Field(default_factory=dict)
    # Price bounds (prices live in 64-bit columns; ledger amounts are exact at any size):
    # unit prices (provider profile and host prices) at most `max_unit_price` tokens per
    # unit-hour; a VM at most `max_vm_price_per_hour` tokens per hour (its
    # `maxPricePerHour`, and hosts dearer than that for it do not fit). Checked at start:
    # a month of such a VM must stay under 64 bits (a sanity bound on what one VM costs).
    max_unit_price: str = Field(default="1000", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    max_vm_price_per_hour: str = Field(default="1000", pattern=r"^\d{1,12}(\.\d{1,18})?$")
    # Rate limits (backend/rate_limits.py), in the `limits` library's notation ("10/minute",
    # "5 per 15 minutes"); a request over one is answered 429 with Retry-After. Per client
    # IP and per token: counted in each backend process's memory (N replicas allow N times
    # as much). Per account (the email a login or sign-up names): counted in the database,
    # shared by every replica. The client IP is the TCP peer, or the address the nearest
    # trusted proxy saw (X-Forwarded-For) when the peer is one of `trusted_proxies` (IPs or
    # networks, JSON list).
    trusted_proxies: list[str] = Field(default_factory=list)
    # Each log-in costs ~30 ms of argon2 CPU: 10/minute lets one address burn 0.5% of a
    # core at most (bench/api_load's flood).
    login_rate_per_ip: str = "10/minute"
    login_failures_per_account: str = "10 per 15 minutes"
    signup_rate_per_ip: str = "20/hour"
    signup_rate_per_account: str = "5/hour"
    api_rate_per_token: str = "1200/minute"  # noqa: S105 (a rate, not a secret)
    heartbeat_rate_per_host: str = "30/minute"  # agents send one every 10 s
    # Before the signature: signer and host id are the sender's choice (a made-up key and
    # host id make a fresh per-host budget), the address is not. 200 hosts behind one NAT.
    heartbeat_rate_per_ip: str = "1200/minute"
    heartbeat_max_bytes: int = Field(default=64 * 1024, ge=1024)  # of the signed payload
    # Password hashing (argon2id, 19 MiB each): at most `password_hash_concurrency` at once
    # per process; a login or sign-up that finds no slot within `password_hash_wait`
    # seconds is answered 503 `busy` with Retry-After, instead of queueing memory.
    password_hash_concurrency: int = Field(default=4, ge=1, le=256)
    password_hash_wait: float = Field(default=1.0, ge=0, le=30)
    # Quotas per account (409 `quota_exceeded` beyond, with the limit in the message).
    # Hosts: registered and not revoked; host tokens: unused and unexpired; VMs: not
    # deleted; API tokens: live ones made on purpose (POST /v1/tokens, the account page).
    # Logins keep at most `max_sessions` live tokens: the least recently used goes first.
    max_hosts: int = Field(default=100, ge=0)
    max_host_tokens: int = Field(default=10, ge=0)
    max_vms: int = Field(default=50, ge=0)
    max_ssh_keys: int = Field(default=50, ge=0)
    max_api_tokens: int = Field(default=50, ge=0)
    max_sessions: int = Field(default=20, ge=1)

    @field_validator(
        "login_rate_per_ip",
        "login_failures_per_account",
        "signup_rate_per_ip",
        "signup_rate_per_account",
        "api_rate_per_token",
        "heartbeat_rate_per_host",
        "heartbeat_rate_per_ip",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        limits.parse(value)  # ValueError: the setting is refused at start
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ip_network(network, strict=False)  # ValueError: refused at start
        return value

    @field_validator("max_host_memory", "max_host_disk")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)  # SizeError is a ValueError: the setting is refused at start
        return value

    @property
    def max_host_memory_bytes(self) -> int:
        return parse_size(self.max_host_memory)

    @property
    def max_host_disk_bytes(self) -> int:
        return parse_size(self.max_host_disk)

    @field_validator("job_intervals", "job_timeouts")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if not seconds > 0:
                raise ValueError(f"{name}: seconds must be > 0")
        return value

    @field_validator("deposit_address")
    @classmethod
    def _ss58(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            public_key_of(value)
        except SignatureError as exc:
            raise ValueError(f"deposit_address: {exc.reason}") from exc
        return value

    @property
    def payout_float_planck(self) -> int:
        return parse_amount(self.payout_float, self.token_decimals)

    @property
    def payout_daily_cap_planck(self) -> int:
        return parse_amount(self.payout_daily_cap, self.token_decimals)

    @property
    def promo_budget_planck(self) -> int:
        return parse_amount(self.promo_budget, self.token_decimals)

    @property
    def promo_payout_daily_cap_planck(self) -> int:
        return parse_amount(self.promo_payout_daily_cap, self.token_decimals)

    @model_validator(mode="after")
    def _amounts_fit(self) -> BackendSettings:
        unit = self._planck(self.max_unit_price, "max_unit_price")
        vm = self._planck(self.max_vm_price_per_hour, "max_vm_price_per_hour")
        self._planck(self.promo_budget, "promo_budget")  # refused at start, not at first use
        self._planck(self.promo_payout_daily_cap, "promo_payout_daily_cap")
        largest = largest_charge(vm)
        if largest > INT64_MAX:
            raise ValueError(
                f"max_vm_price_per_hour: one ledger entry of such a VM could reach {largest} "
                f"planck, over the 64-bit limit {INT64_MAX}; lower it"
            )
        defaults = (
            self.default_price_cpu_hour,
            self.default_price_memory_gib_hour,
            self.default_price_disk_gib_hour,
        )
        if max(defaults) > unit:
            raise ValueError("the default prices must not exceed max_unit_price")
        return self

    def _planck(self, amount: str, what: str) -> int:
        try:
            return parse_amount(amount, self.token_decimals)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc} (with {self.token_decimals} decimals)") from exc

    @property
    def max_unit_price_planck(self) -> int:
        return parse_amount(self.max_unit_price, self.token_decimals)

    @property
    def max_vm_price_planck(self) -> int:
        return parse_amount(self.max_vm_price_per_hour, self.token_decimals)

    @model_validator(mode="after")
    def _defaults(self) -> BackendSettings:
        if self.key_file is None:
            self.key_file = self.data_dir / "backend-mnemonic"
        if self.payout_key_file is None:
            self.payout_key_file = self.data_dir / "payout-mnemonic"
        if self.deposit_key_file is None:
            self.deposit_key_file = self.data_dir / "deposit-mnemonic"
        if self.anchor_key_file is None:
            self.anchor_key_file = self.data_dir / "anchor-mnemonic"
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.database_url_file is not None:
            return read_secret_file(self.database_url_file)
        return f"sqlite:///{self.data_dir / 'kumulus.db'}"

    @property
    def key_path(self) -> Path:
        assert self.key_file is not None
        return self.key_file
