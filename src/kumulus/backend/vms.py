"""Developer VMs end to end: validate, place (scheduler), ask the chosen host's agent, keep
intended vs actual state, and release capacity whenever a VM stops holding it."""

from __future__ import annotations

import builtins
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import (
    billing,
    converge,
    host_keys,
    ledger,
    paging,
    placed_vms,
    quotas,
    vm_costs,
)
from kumulus.backend.batch_placement import place_many
from kumulus.backend.billing import STOPPED_FOR_FUNDS, failure_reason, start_metering
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import Database
from kumulus.backend.group_commit import RETRY, GroupCommitter, Retry
from kumulus.backend.hosts import bounded_planck, host_status
from kumulus.backend.models import VM, Account, Host, SshKey
from kumulus.backend.placed_vms import PlacingVM
from kumulus.backend.scheduler import (
    HostsBusyError,
    NoHostFitsError,
    Placement,
    Want,
    explain,
    release,
)
from kumulus.backend.schemas import VMCreateIn, VMOut
from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.config import BackendSettings
from kumulus.core.errors import (
    ConflictError,
    InvalidError,
    KumulusError,
    NotFoundError,
    PaymentRequiredError,
    UnavailableError,
    UpstreamError,
)
from kumulus.core.hostkeys import parse_host_key
from kumulus.core.hostnames import (
    HostnameError,
    ssh_command,
    ssh_problem,
    validate_public_host,
)
from kumulus.core.jobs import LeaseLostError
from kumulus.core.log_times import LogChunk
from kumulus.core.money import format_amount, hourly_price
from kumulus.core.schemas import VMPublic
from kumulus.core.sizes import format_size
from kumulus.host_slots import host_slots

if TYPE_CHECKING:
    from kumulus.backend.converge import Action, Converger
    from kumulus.backend.metrics import BackendEvents

log = logging.getLogger(__name__)

# A stop its host has not carried out after this long counts as a failed lease.
STOP_GRACE = timedelta(minutes=10)
# A create refused by its host is placed elsewhere: on at most this many hosts per try,
# and after this many refusals in all it fails.
MAX_HOSTS = 2
MAX_REFUSALS = 4
PENDING_STOP = ("stopping", "running", "starting", "restarting")

_DOCKER_TO_ACTUAL = {
    "running": "running",
    "exited": "stopped",
    "created": "starting",
    "restarting": "restarting",
    "paused": "stopped",
}


def want_of(vm: VM | PlacingVM) -> Want:
    return Want(
        cpu=vm.cpu,
        memory=vm.memory,
        disk=vm.disk,
        region=vm.region or None,
        max_price_hour=vm.max_price_hour,
        allow_weak=bool(vm.allow_weak_isolation),
    )


def price_hour(vm: VM) -> int:
    """What the VM pays per hour while running, at the prices fixed when it was placed."""
    return hourly_price(
        vm.cpu,
        vm.memory,
        vm.disk,
        vm.price_cpu_hour,
        vm.price_memory_gib_hour,
        vm.price_disk_gib_hour,
    )


def _count_lease(db: Session, host_id: str, completed: bool) -> None:
    column = Host.leases_completed if completed else Host.leases_failed
    db.execute(update(Host).where(Host.id == host_id).values({column: column + 1}))


# A placement that finds every fitting host held by other placements tries again for this long.
RETRY_PLACEMENT_FOR = 5.0


@dataclass(frozen=True)
class PlaceRequest:
    """A VM to place. `account_id`: its developer's, which the caller read with the VM (a
    VM's owner never changes): the balances its hold moves are locked before the VM's row
    is read, so the placer needs not read it once more first. A request whose VM belongs
    to another account is refused, having changed nothing."""

    vm_id: str
    account_id: int
    tried: frozenset[str]  # hosts that refused it: not again


def placer(db: Database, settings: BackendSettings) -> GroupCommitter[PlaceRequest, str]:
    """This process's VM placements, group-committed (backend/group_commit.py): the
    placements arriving together take their balances' locks, hosts and holds in one
    transaction and one commit. Outcome: the host id."""
    return GroupCommitter(
        db, partial(place_vms, settings), "vm-placer", retry_for=RETRY_PLACEMENT_FOR
    )


def place_vms(
    settings: BackendSettings,
    db: Session,
    requests: Sequence[PlaceRequest],
    last_try: Sequence[bool],
) -> list[str | BaseException | Retry]:
    """Place each VM on a host that fits and take its prepaid hold, in the caller's
    transaction (the caller commits). Per request: the host id; ConflictError
    (`no_host_fits`, `deleting`) or PaymentRequiredError, having changed nothing; or RETRY
    when every fitting host is held by another transaction (never on its `last_try`)."""
    ids = sorted({r.vm_id for r in requests})
    db.flush()  # the VM rows are read and written below around the ORM: nothing pending
    # Balances first, then the hosts: the order every money change takes locks in, and one
    # sorted lock for the whole batch (ledger.lock: once per transaction). Only the
    # accounts a hold moves money between (billing.hold_keys).
    locked = ledger.lock(
        db, [k for r in requests for k in billing.hold_keys(r.vm_id, r.account_id)]
    )
    # Read under those locks: another request (a retry of the same create, on this or
    # another replica) may have placed or deleted one of them meanwhile. Plain rows, not
    # ORM objects (backend/placed_vms.py).
    vms = placed_vms.load(db, ids)

    def money(planck: int) -> str:
        return format_amount(planck, settings.token_decimals, settings.token_symbol)

    outcomes: list[str | BaseException | Retry | None] = []
    # The VMs to place, once each (the same VM asked twice in one batch is placed once and
    # both requests get its outcome): its first request, and whether any is on its last try.
    placing: dict[str, tuple[PlacingVM, PlaceRequest, bool]] = {}
    for request, last in zip(requests, last_try, strict=True):
        vm = vms.get(request.vm_id)
        if vm is None or vm.intended_state == "deleted":  # its hold is back already
            outcomes.append(ConflictError(f"VM {request.vm_id} is being deleted", code="deleting"))
        elif vm.account_id != request.account_id:  # its balances are not the ones locked
            outcomes.append(
                ConflictError(f"VM {request.vm_id} is not account {request.account_id}'s")
            )
        elif vm.reserved and vm.host_id:
            outcomes.append(vm.host_id)  # placed already (the same placement asked twice)
        else:
            first = placing.get(vm.id)
            placing[vm.id] = (
                (vm, request, last) if first is None else (*first[:2], first[2] or last)
            )
            outcomes.append(None)
    wants = [want_of(vm) for vm, _, _ in placing.values()]
    placed = place_many(
        db,
        wants,
        settings.heartbeat_ttl,
        [request.tried for _, request, _ in placing.values()],
        money,
        settings.max_vm_price_planck,
    )
    # The holds' postings are written together (two statements for the batch, not two
    # per VM), in this transaction, under the locks they were checked under.
    postings = ledger.PostingBatch()
    finish = partial(
        _finish_placement, settings, db, billing.terms_of(settings), utcnow(), locked, money,
        postings,
    )  # fmt: skip
    finished = {
        vm.id: finish(vm, want, request, outcome, last)
        for (vm, request, last), want, outcome in zip(placing.values(), wants, placed, strict=True)
    }
    ledger.flush_batch(db, postings)
    placed_vms.write(db, [vm for vm, _, _ in placing.values() if isinstance(finished[vm.id], str)])
    return [
        finished[r.vm_id] if outcome is None else outcome
        for r, outcome in zip(requests, outcomes, strict=True)
    ]


def retire_unplaced(db: Session, grace: float) -> int:
    """Retire VM rows that no placement finished `grace` seconds after their creation: their
    create request died between the row's commit and its placement (a replica killed) and
    no retry with the same key came to finish it (VMService._adopt_unplaced). Deleted (it
    never existed anywhere), with the reason: nothing was reserved, held or charged; the
    placer refuses a deleted VM. Serialised with placements by the VMs' balance locks,
    which placements take first; returns how many."""
    cutoff = utcnow() - timedelta(seconds=grace)
    stale = list(
        db.scalars(
            select(VM)
            .where(
                VM.host_id.is_(None),
                VM.reserved.is_(False),
                VM.actual_state == "pending",
                VM.intended_state == "running",
                VM.created_at < cutoff,
            )
            .limit(500)
        )
    )
    if not stale:
        return 0
    billing.lock_vms(db, stale)  # re-read under the locks: a placement may have finished
    now = utcnow()
    done = db.execute(
        update(VM)
        .where(
            VM.id.in_([vm.id for vm in stale]),
            VM.host_id.is_(None),
            VM.reserved.is_(False),
            VM.actual_state == "pending",
            VM.intended_state == "running",
        )
        .values(
            intended_state="deleted",
            actual_state="deleted",
            failure_reason=(
                "its create request was cut off before the VM was placed (the backend "
                "handling it stopped); nothing was charged: create it again"
            ),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    db.commit()
    count = int(done.rowcount)  # type: ignore[attr-defined]
    if count:
        log.warning("retired %d VM row(s) whose create request died before placement", count)
    return count


def _finish_placement(
    settings: BackendSettings,
    db: Session,
    terms: billing.Terms,
    now: datetime,
    locked: dict[ledger.Key, int],
    money: Callable[[int], str],
    postings: ledger.PostingBatch,
    vm: PlacingVM,
    want: Want,
    request: PlaceRequest,
    placed: Placement | NoHostFitsError | HostsBusyError,
    last_try: bool,
) -> str | BaseException | Retry:
    """Take the placed VM's prepaid hold and record its host (placed at `now`), or turn a
    refusal into the request's outcome. `want`: the VM's `want_of`."""
    if isinstance(placed, HostsBusyError):
        if not last_try:
            return RETRY
        return ConflictError(
            explain(
                db,
                want,
                settings.heartbeat_ttl,
                set(request.tried),
                money,
                settings.max_vm_price_planck,
            ),
            code="no_host_fits",
        )
    if isinstance(placed, NoHostFitsError):
        return ConflictError(str(placed), code="no_host_fits")
    before = (vm.price_cpu_hour, vm.price_memory_gib_hour, vm.price_disk_gib_hour)
    vm.price_cpu_hour = placed.price_cpu_hour
    vm.price_memory_gib_hour = placed.price_memory_gib_hour
    vm.price_disk_gib_hour = placed.price_disk_gib_hour
    try:
        # In the placement's transaction: no hold, no placement. It refuses before it
        # posts anything, so undoing the reservation undoes everything.
        billing.take_hold(db, vm, locked, terms, money, postings)
    except PaymentRequiredError as exc:
        release(db, placed.host_id, want, commit=False)
        vm.price_cpu_hour, vm.price_memory_gib_hour, vm.price_disk_gib_hour = before
        return exc
    vm.host_id, vm.reserved, vm.updated_at = placed.host_id, True, now
    vm.actual_state, vm.failure_reason = "pending", None
    converge.mark_intent(vm, timedelta(seconds=settings.converge_in_flight), now)
    return placed.host_id


class VMService:
    """Developer VMs. Create, start, stop and delete record an intent with its money and
    return at once; the host is called by `converger` (when given, right away) and by the
    jobs until it confirms (backend/converge.py)."""

    def __init__(
        self,
        db: Session,
        settings: BackendSettings,
        keypair: Keypair,
        converger: Converger | None = None,
        placer: GroupCommitter[PlaceRequest, str] | None = None,
        events: BackendEvents | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.keypair = keypair
        self.converger = converger
        self.placer = placer  # without it, each placement commits on its own
        self.events = events  # placement metrics (backend/metrics.py); None: not counted

    def _kick(self, vm: VM, action: Action) -> None:
        if self.converger is not None:
            self.converger.kick(vm.id, action)

    def act(self, action: Action) -> Callable[[VM], bool]:
        """The method that carries out `action` on the VM's host (True once confirmed)."""
        return {
            "create": self.deliver_create,
            "start": self.send_pending_start,
            "stop": self.send_pending_stop,
            "delete": self.finish_delete,
        }[action]

    @staticmethod
    def converged(vm: VM, action: Action) -> bool:
        """Whether nothing of `action` is left to do for the VM (its host confirmed, it
        failed for good, or a later intent replaced it)."""
        if action == "create":  # pending without a host: being placed elsewhere
            return vm.actual_state != "pending" or vm.intended_state == "deleted"
        if action == "start":
            return vm.start_requested_at is None or vm.intended_state != "running"
        if action == "stop":
            return vm.intended_state != "stopped" or vm.actual_state not in PENDING_STOP
        return vm.actual_state == "deleted"

    def wait(self, vm: VM, action: Action, seconds: float) -> None:
        """Wait up to `seconds` for `action` to converge (see converge.wait_for)."""
        if seconds > 0 and not self.converged(vm, action):
            converge.wait_for(self.db, vm, lambda v: self.converged(v, action), seconds)

    # -- views ---------------------------------------------------------------------------

    def money(self, planck: int) -> str:
        return format_amount(planck, self.settings.token_decimals, self.settings.token_symbol)

    def views(self, vms: Sequence[VM]) -> builtins.list[VMOut]:
        """`view` of each VM, their posted usage read in one query."""
        posted = vm_costs.posted_usage(self.db, vms)
        return [self.view(vm, posted[vm.id]) for vm in vms]

    def view(self, vm: VM, posted: int | None = None) -> VMOut:
        """The VM as its developer sees it. `posted`: its usage posted to the ledger when
        the caller read it already (`views`), else read here."""
        actual = vm.actual_state
        offline = False
        if vm.host_id and actual not in ("failed", "deleted", "deleting", "insufficient_funds"):
            host = self.db.get(Host, vm.host_id)
            offline = host is None or host_status(host, self.settings.heartbeat_ttl) == "offline"
            if offline:
                actual = "unreachable"  # never claim running for a host we cannot hear
        if posted is None:
            posted = vm_costs.posted_usage(self.db, [vm])[vm.id]
        # The address comes from the provider and ends up in a shell: rows stored before it
        # was validated (or written around the API) are withheld, with the reason.
        problem = ssh_problem(vm.ssh_host, vm.ssh_port, vm.username)
        command = None
        if problem is None and vm.ssh_host and vm.ssh_port:
            command = ssh_command(vm.ssh_host, vm.ssh_port, vm.username)
        shown = problem is None
        deadline = billing.unfunded_deadline(vm, self.terms)
        return VMOut(
            id=vm.id,
            name=vm.name,
            username=vm.username,
            cpu=vm.cpu,
            memory=format_size(vm.memory),
            disk=format_size(vm.disk),
            region=vm.region,
            host_id=vm.host_id,
            intended_state=vm.intended_state,
            actual_state=actual,  # type: ignore[arg-type]
            ssh_host=validate_public_host(vm.ssh_host) if shown and vm.ssh_host else None,
            ssh_port=vm.ssh_port if shown else None,
            ssh_command=command,
            ssh_problem=problem,
            host_key=vm.host_key,
            host_key_fingerprint=vm.host_key_fingerprint,
            disk_used_bytes=vm.disk_used,
            disk_used_at=aware(vm.disk_used_at) if vm.disk_used_at else None,
            failure_reason=vm.failure_reason,
            price_per_hour=self.money(price_hour(vm)) if vm.host_id else None,
            cost_so_far=self.money(vm_costs.cost_so_far(vm, posted, offline)),
            delete_after=deadline,
            funds_warning=(
                None
                if deadline is None
                else "your funds ran out and this stopped VM's disk is no longer paid for: "
                f"deposit before {deadline:%Y-%m-%d %H:%M} UTC or it is deleted"
            ),
            created_at=aware(vm.created_at),
        )

    def owned(self, account: Account, vm_id: str) -> VM:
        vm = self.db.get(VM, vm_id[:32])
        # A VM being deleted on a host that is away stays visible (actual "deleting").
        if vm is None or vm.account_id != account.id or vm.actual_state == "deleted":
            raise NotFoundError(f"no VM {vm_id[:40]}")
        return vm

    def _listed(self, account: Account) -> Select[VM]:
        return select(VM).where(VM.account_id == account.id, VM.actual_state != "deleted")

    def list(self, account: Account) -> list[VM]:
        return list(self.db.scalars(self._listed(account).order_by(VM.created_at, VM.id)))

    def page(
        self, account: Account, limit: int, after: str | None
    ) -> tuple[builtins.list[VM], str | None]:
        """The account's VMs, oldest first, one page at a time (kumulus.backend.paging)."""
        return paging.page(self.db, self._listed(account), [VM.created_at, VM.id], limit, after)

    # -- create --------------------------------------------------------------------------

    def _key_line(self, account: Account, body: VMCreateIn) -> str:
        if (body.ssh_key_id is None) == (body.ssh_key is None):
            raise InvalidError("give exactly one of sshKeyId or sshKey")
        if body.ssh_key_id is not None:
            key = self.db.get(SshKey, body.ssh_key_id)
            if key is None or key.account_id != account.id:
                raise NotFoundError(f"no SSH key {body.ssh_key_id}")
            return key.public_key
        return body.ssh_key or ""  # validated and normalised by the schema

    def create(self, account: Account, body: VMCreateIn, idempotency_key: str | None) -> VM:
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= 128:
                raise InvalidError("Idempotency-Key must be 1-128 characters")
            existing = self.db.scalar(
                select(VM).where(VM.account_id == account.id, VM.idempotency_key == idempotency_key)
            )
            if existing is not None:
                return self._adopt_unplaced(existing)
        key_line = self._key_line(account, body)
        quotas.check_vms(self.db, account.id, self.settings.max_vms)
        now = utcnow()
        vm = VM(
            id=secrets.token_hex(8),
            account_id=account.id,
            name=body.name,
            username=body.username,
            ssh_key=key_line,
            cpu=body.cpu,
            memory=body.memory,
            disk=body.disk,
            region=body.region or "",
            intended_state="running",
            actual_state="pending",
            reserved=False,
            max_price_hour=(
                None
                if body.max_price_per_hour is None
                else bounded_planck(
                    self.settings,
                    body.max_price_per_hour,
                    "maxPricePerHour",
                    self.settings.max_vm_price_planck,
                )
            ),
            allow_weak_isolation=body.allow_weak_isolation,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        self.db.add(vm)
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()  # the same key raced us: theirs is the VM
            existing = self.db.scalar(
                select(VM).where(VM.account_id == account.id, VM.idempotency_key == idempotency_key)
            )
            if existing is None:
                raise
            return self._adopt_unplaced(existing)
        return self._place_new(vm)

    @staticmethod
    def _unplaced(vm: VM) -> bool:
        """A created row whose placement never happened: its request died (a replica killed
        between the row's commit and the placement's) or is still placing it."""
        return (
            vm.host_id is None
            and not vm.reserved
            and vm.actual_state == "pending"
            and vm.intended_state == "running"
        )

    def _adopt_unplaced(self, vm: VM) -> VM:
        """A retried create (same key) finds its VM; one left unplaced is placed now, so a
        request cut off by a dying replica is finished by the retry instead of leaving a
        VM that never runs. Serialised with the first request on the VM's hold balances."""
        return self._place_new(vm) if self._unplaced(vm) else vm

    def _place_new(self, vm: VM) -> VM:
        account_id = vm.account_id
        try:
            placed = self._place(vm, tried=set())
        except (ConflictError, PaymentRequiredError):
            # Nothing fits or nothing pays: no VM to keep (unless another request for the
            # same key placed it meanwhile). Under the developer's balance lock, which
            # every placement of the VM takes before anything else: a placement of it by
            # that other request has committed (the row is kept) or not begun. Without it
            # the row could go while that placement was reserving its host and hold.
            self.db.rollback()
            ledger.lock(self.db, [ledger.key_of(ledger.DEVELOPER, account_id)])
            self.db.execute(
                sql_delete(VM)
                .where(VM.id == vm.id, VM.host_id.is_(None), VM.reserved.is_(False))
                .execution_options(synchronize_session=False)
            )
            self.db.commit()
            raise
        if placed:
            self._kick(vm, "create")
        return vm

    def _place(self, vm: VM, tried: set[str]) -> bool:
        """Place the VM on a host that fits (none of `tried`) and take its prepaid hold, in
        one transaction (committed; with `placer`, the group commit of the placements
        arriving together): ConflictError `no_host_fits` or PaymentRequiredError, nothing
        changed, when it cannot be. Placing a VM placed already (another request for the
        same key did meanwhile) changes nothing. Returns True (the VM is placed)."""
        try:
            self._place_or_raise(vm, tried)
        except (ConflictError, PaymentRequiredError) as exc:
            if self.events is not None:
                self.events.refused(exc.error_code)
            raise
        if self.events is not None:
            self.events.placed()
        return True

    def _place_or_raise(self, vm: VM, tried: set[str]) -> None:
        request = PlaceRequest(vm.id, vm.account_id, frozenset(tried))
        if self.placer is not None:
            self.db.commit()  # a fresh snapshot afterwards sees the placer's commit
            try:
                self.placer.run(request)
            finally:
                self.db.refresh(vm)
            return
        give_up = time.monotonic() + RETRY_PLACEMENT_FOR
        for attempt in itertools.count():
            last = time.monotonic() >= give_up
            outcome = place_vms(self.settings, self.db, [request], [last])[0]
            if isinstance(outcome, str):
                self.db.commit()
                return
            self.db.rollback()
            if isinstance(outcome, BaseException):
                raise outcome
            # Every fitting host is held by another placement: jittered, so that those
            # that collided do not collide again in step.
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311

    @staticmethod
    def awaiting_create(vm: VM) -> bool:
        """Placed, its create not answered by the host yet."""
        return vm.host_id is not None and vm.agent_vm_id is None and vm.actual_state == "pending"

    def deliver_create(self, vm: VM) -> bool:
        """Send a placed VM's create to its host, with the same idempotency key (its id)
        every time, and act on the answer: the VM is adopted (paid for from then on), or,
        when the host refuses, placed on another host that fits and sent there (at most
        MAX_HOSTS hosts per try, MAX_REFUSALS in its life), or failed. True once resolved;
        raises the error family while its host is away or silent: it is asked again later,
        on the same host, so a late create can never leave an unbilled VM running anywhere.
        """
        self.db.refresh(vm)
        tried: set[str] = set()
        while self.awaiting_create(vm) and vm.intended_state != "deleted":
            host = self.db.get(Host, vm.host_id or "")
            if host is not None and host_status(host, self.settings.heartbeat_ttl) == "offline":
                raise UnavailableError(f"host {host.id} is offline", code="host_offline")
            refused = self._send_create(vm, host)
            if refused is None:
                return True
            tried.add(vm.host_id or "")
            if not self._unplace(vm):  # its hold and capacity back first (commits)
                return True  # another try got it adopted meanwhile: that answer stands
            if vm.intended_state == "deleted":
                return True  # deleted meanwhile: not placed again (the delete finishes it)
            if len(tried) >= MAX_HOSTS or vm.create_refusals >= MAX_REFUSALS:
                self._fail(vm, refused)
                return True
            try:
                self._place(vm, tried)
            except (ConflictError, PaymentRequiredError) as exc:
                if exc.error_code != "deleting":
                    self._fail(vm, f"{refused}; {exc.detail}")
                return True
        return False

    def _send_create(self, vm: VM, host: Host | None) -> str | None:
        """Ask the VM's host to create it: None once adopted, else why the host will not
        have it. Raises the error family when the host does not answer."""
        if host is None:
            return f"host {vm.host_id} is gone"
        try:
            validate_public_host(host.public_ip)
        except HostnameError:
            # Registered before addresses were validated: its VMs would be paid for but
            # never shown an ssh address.
            return f"host {host.id}: its SSH address is not valid"
        try:
            agent_vm = self._agent(host).create_vm(self._agent_body(vm), idempotency_key=vm.id)
        except ApiError as exc:
            if exc.status is None:
                # No answer in time: the host may still be creating it. It stays placed
                # there (hold and capacity kept, nothing billed yet) until it answers.
                raise self._agent_error(exc) from exc
            log.warning("VM %s: agent create failed on %s: %s", vm.id, host.id, exc.detail)
            _count_lease(self.db, host.id, completed=False)
            self.db.commit()
            return f"host {host.id}: {exc.detail}"
        if not self._adopt(vm, host, agent_vm):
            self._drop_late_create(vm, host, agent_vm)
        return None

    def _drop_late_create(self, vm: VM, host: Host, agent_vm: VMPublic) -> None:
        """`host` answered a create after another try had moved `vm` to another host (its
        answer came late): nobody pays for what it made, so it is deleted there (best
        effort; the host counts it among its unknown containers otherwise)."""
        if vm.host_id == host.id and vm.agent_vm_id == agent_vm.vm_id:
            return  # another try adopted this same answer
        log.warning(
            "VM %s: host %s answered its create after it moved to %s; deleting it there",
            vm.id,
            host.id,
            vm.host_id,
        )
        try:
            self._agent(host).delete_vm(agent_vm.vm_id)
        except ApiError as exc:
            log.warning("VM %s: could not delete it on %s: %s", vm.id, host.id, exc.detail)
            return
        # While the delete was on its way, another try may have placed the VM back on this
        # host and adopted the very container just deleted (the host answers a retried
        # create with the VM it made): it then awaits its create again, unmetered, and the
        # next try makes it anew.
        undone = self.db.execute(
            update(VM)
            .where(VM.id == vm.id, VM.host_id == host.id, VM.agent_vm_id == agent_vm.vm_id)
            .values(
                agent_vm_id=None,
                metered_until=None,
                meter_carry=0,
                posted_at=None,
                ssh_host=None,
                ssh_port=None,
                host_key=None,
                host_key_fingerprint=None,
                disk_used=None,
                disk_used_at=None,
                actual_state="pending",
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        self.db.commit()
        self.db.refresh(vm)
        if undone.rowcount:  # type: ignore[attr-defined]
            log.warning(
                "VM %s: adopted on %s while its late create was deleted there; created again",
                vm.id,
                host.id,
            )

    def _fail(self, vm: VM, why: str) -> None:
        vm.actual_state, vm.failure_reason, vm.updated_at = "failed", why, utcnow()
        self.db.commit()

    def _adopt(self, vm: VM, host: Host, agent_vm: VMPublic) -> bool:
        """The host has the VM: it is paid for from now on (commits); False, with nothing
        changed, when it was adopted already or is no longer placed on `host`. Once only: a
        worker and a job that both got the host's answer must not restart its metering;
        and a late answer from a host the VM left must not point it at that host's
        container while its capacity and pay go to the host it is placed on."""
        probe = VM()
        start_metering(probe)
        # Checked once more here (the client checked the answer): what is stored is a key,
        # and the fingerprint is the backend's own, never the host's word.
        host_key = parse_host_key(agent_vm.host_key) if agent_vm.host_key else None
        adopted = self.db.execute(
            update(VM)
            .where(VM.id == vm.id, VM.host_id == host.id, VM.agent_vm_id.is_(None))
            .values(
                agent_vm_id=agent_vm.vm_id,
                metered_until=probe.metered_until,
                meter_carry=probe.meter_carry,
                posted_at=probe.posted_at,
                ssh_host=host.public_ip,
                ssh_port=agent_vm.ssh_port,
                host_key=host_key.line if host_key else None,
                host_key_fingerprint=host_key.fingerprint if host_key else None,
                disk_used=agent_vm.disk_used_bytes,
                disk_used_at=utcnow() if agent_vm.disk_used_bytes is not None else None,
                actual_state="running" if agent_vm.status == "Running" else "starting",
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        self.db.commit()
        self.db.refresh(vm)
        return bool(adopted.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def _agent_body(vm: VM) -> dict[str, Any]:
        return {
            "username": vm.username,
            "sshKey": vm.ssh_key,
            "cpu": vm.cpu,
            "memory": vm.memory,
            "disk": vm.disk,
        }

    def _agent(self, host: Host) -> AgentClient:
        # An agent may take up to its call deadline to answer (or trickle on purpose): the
        # read transaction before the call ends here, so no pooled connection waits on it.
        # Every caller has only read since its last commit; a caller with changes pending
        # keeps them (and its transaction).
        if not (self.db.new or self.db.dirty or self.db.deleted):
            self.db.commit()
        # Its answers must be signed by the key its heartbeats are signed by (none for a
        # revoked key: every answer is then refused).
        signer = host_keys.signing_address(host) or ""
        settings = self.settings
        policy = CallPolicy(
            deadline=settings.agent_call_deadline,
            max_answer_bytes=settings.agent_answer_max_bytes,
            allow_private=settings.allow_private_agents,
            slots=host_slots(settings.agent_calls_per_host, settings.agent_queue_wait),
        )
        return AgentClient(host.api_url, host.id, self.keypair, signer, policy)

    def _unplace(self, vm: VM) -> bool:
        """Undo a placement whose host refused the VM: its hold back to the developer, its
        capacity back to the host, one more refusal counted (commits). False, nothing
        changed, when the VM no longer awaits that create (re-read under its balances'
        lock): another try of the same create got it adopted, and it runs there."""
        host_id = vm.host_id
        locked, _ = billing.lock_vms(self.db, [vm])
        if not self.awaiting_create(vm) or vm.host_id != host_id:
            self.db.commit()
            return False
        vm.create_refusals = (vm.create_refusals or 0) + 1
        billing.release(self.db, vm, locked, keep=0)
        self._give_back(vm)
        vm.reserved, vm.host_id = False, None
        self.db.commit()
        return True

    def _give_back(self, vm: VM) -> None:
        """Give the VM's reserved capacity back to its host, once whoever calls: the one
        that clears `reserved` in the database releases it (caller commits). Acting on
        `vm.reserved` as read earlier released it twice when a delete raced a refusal."""
        won = self.db.execute(
            update(VM)
            .where(VM.id == vm.id, VM.reserved.is_(True))
            .values(reserved=False)
            .execution_options(synchronize_session=False)
        )
        if won.rowcount == 1:  # type: ignore[attr-defined]
            host_id = self.db.scalar(select(VM.host_id).where(VM.id == vm.id))
            if host_id:
                release(self.db, host_id, want_of(vm), commit=False)
        vm.reserved = False

    @property
    def terms(self) -> billing.Terms:
        return billing.terms_of(self.settings)

    # -- lifecycle -----------------------------------------------------------------------

    def _host_agent(self, vm: VM) -> AgentClient:
        host = self.db.get(Host, vm.host_id) if vm.host_id else None
        if host is None or vm.agent_vm_id is None:
            raise ConflictError(f"VM {vm.id} is {vm.actual_state}; it has no host to act on")
        if host_status(host, self.settings.heartbeat_ttl) == "offline":
            raise UnavailableError(
                f"host {host.id} is offline; the VM is unreachable, retry later",
                code="host_offline",
            )
        return self._agent(host)

    def _agent_error(self, exc: ApiError) -> KumulusError:
        if exc.status is None:
            return UnavailableError(exc.detail, code="host_unreachable")
        return UpstreamError(f"the host refused: {exc.detail}", retry=exc.retry)

    @staticmethod
    def _not_deleting(vm: VM) -> None:
        if vm.intended_state == "deleted":
            raise ConflictError(f"VM {vm.id} is being deleted", code="deleting")

    def _settle(
        self,
        vm: VM,
        to_state: str,
        strict: bool = False,
        still: Callable[[VM], bool] | None = None,
    ) -> bool:
        """Charge what the VM owes in its current state and size its hold for `to_state`,
        in one transaction (committed). `strict`: PaymentRequiredError, nothing changed,
        when the developer's funds cannot cover a full hold in that state. `still`: checked
        on the VM as re-read under its balances' lock; when it no longer holds (a later
        intent replaced the one being carried out), nothing is changed and False returned."""
        self.db.commit()  # the VM's balances are locked first, in a fresh transaction
        try:
            locked, hosts = billing.lock_vms(self.db, [vm], self.terms.heartbeat_ttl)
            if still is not None and not still(vm):
                self.db.commit()
                return False
            billing.settle(
                self.db,
                vm,
                self.terms,
                to_state=to_state,
                strict=strict,
                money=self.money,
                locked=locked,
                providers=hosts,
            )
            self.db.commit()
        except (PaymentRequiredError, OperationalError, InterfaceError, LeaseLostError):
            self.db.rollback()
            self.db.refresh(vm)
            raise  # no funds, no database or a job's lost lease: no change either
        except Exception as exc:
            # A VM whose charge fails (a row that breaks a ledger rule) must still be
            # stoppable and, above all, deletable: the change goes on, unbilled, logged.
            self.db.rollback()
            self.db.refresh(vm)
            if strict:
                raise
            if still is not None and not still(vm):
                return False
            log.warning("VM %s: not metered before the change: %s", vm.id, failure_reason(exc))
            vm.intended_state = to_state
            self.db.commit()
        return True

    def _on_a_host(self, vm: VM) -> None:
        if vm.host_id is None or vm.agent_vm_id is None:
            raise ConflictError(f"VM {vm.id} is {vm.actual_state}; it has no host to act on")

    def start(self, vm: VM) -> VM:
        """Record the wish that the VM runs, with a full hold at its running price
        (PaymentRequiredError, nothing changed, when the developer cannot cover it), and
        have its host start it (see send_pending_start). It pays the running price only
        once its host confirms."""
        self._not_deleting(vm)
        self._on_a_host(vm)
        running = vm.actual_state in ("running", "starting", "restarting")
        if vm.intended_state == "running" and (vm.start_requested_at is not None or running):
            # Running, or its start recorded already: asking again neither calls the host
            # again nor resets its backoff (the jobs keep sending it).
            return vm
        self._settle(vm, "running", strict=True)
        vm.start_requested_at = vm.updated_at = utcnow()
        converge.mark_intent(vm, timedelta(seconds=self.settings.converge_in_flight))
        self.db.commit()
        self._kick(vm, "start")
        return vm

    @staticmethod
    def _start_pending(vm: VM) -> bool:
        return vm.intended_state == "running" and vm.start_requested_at is not None

    def send_pending_start(self, vm: VM) -> bool:
        """Have the host start a VM whose start it has not confirmed. True once it has
        (or refused outright: the VM is wanted stopped again, with the host's reason);
        raises the error family while the host is away or failing (tried again later)."""
        self.db.refresh(vm)
        if not self._start_pending(vm):
            return False
        try:
            agent_vm = self._host_agent(vm).start_vm(vm.agent_vm_id or "")
        except ApiError as exc:
            if exc.status is None or exc.status >= 500:
                raise self._agent_error(exc) from exc
            # It will not run there: the running hold back (unless a stop or delete came
            # meanwhile, which has sized the hold already).
            if self._settle(vm, "stopped", still=self._start_pending):
                vm.start_requested_at = None
                vm.failure_reason = f"the host refused to start it: {exc.detail}"
                self.db.commit()
            return True
        # The time until now was at the rate of what the host reported (not running).
        if not self._settle(vm, "running", still=self._start_pending):
            # A stop or delete was recorded while the host answered: it wins. The host
            # runs the VM now, so a stop is sent to it again (the `stops` job); a delete
            # is carried out by its own worker and the `deletes` job.
            if vm.intended_state == "stopped":
                vm.actual_state, vm.updated_at = "running", utcnow()
                self.db.commit()
            return True
        if vm.intended_state == "running":  # not stopped for funds meanwhile
            vm.actual_state = "running" if agent_vm.status == "Running" else "starting"
            vm.failure_reason = None
        vm.start_requested_at, vm.updated_at = None, utcnow()
        self.db.commit()
        return True

    def stop(self, vm: VM) -> VM:
        """Record the wish that the VM is stopped (it pays the stopped rate from now,
        whatever its host does) and have its host stop it (see send_pending_stop)."""
        self._not_deleting(vm)
        self._on_a_host(vm)
        if vm.intended_state == "stopped":
            # Stopped, or its stop recorded already (billed stopped since): the `stops` job
            # sends it, with its backoff, until the host confirms.
            return vm
        self._settle(vm, "stopped")
        vm.start_requested_at = None
        if vm.actual_state in ("running", "starting", "restarting"):
            vm.actual_state = "stopping"
        vm.updated_at = utcnow()
        converge.mark_intent(vm, timedelta(seconds=self.settings.converge_in_flight))
        self.db.commit()
        self._kick(vm, "stop")
        return vm

    def send_pending_stop(self, vm: VM) -> bool:
        """Send again the stop of a VM that is wanted stopped while its host has not
        confirmed it (a stop whose agent call failed, or a stop for insufficient funds,
        which the meter job only records). True once the host confirms; raises the error
        family when the host is away or refuses (the `stops` job tries again later)."""
        self.db.refresh(vm)  # a start or delete since the job listed it wins
        if vm.intended_state != "stopped" or vm.actual_state not in PENDING_STOP:
            return False
        asked = aware(vm.stop_requested_at) if vm.stop_requested_at else None
        if vm.actual_state == "running" and asked and utcnow() - asked >= STOP_GRACE:
            # Its host reports it running long after the stop: the developer has paid the
            # stopped rate since, and the provider's failure to stop it fails the lease (once).
            _count_lease(self.db, vm.host_id or "", completed=False)
            vm.stop_requested_at = None
            self.db.commit()
            log.warning("VM %s: still running on %s long after its stop", vm.id, vm.host_id)
        try:
            self._host_agent(vm).stop_vm(vm.agent_vm_id or "")
        except ApiError as exc:
            raise self._agent_error(exc) from exc
        confirmed = "insufficient_funds" if vm.failure_reason == STOPPED_FOR_FUNDS else "stopped"
        done = self.db.execute(
            update(VM)
            .where(VM.id == vm.id, VM.intended_state == "stopped")
            .values(actual_state=confirmed)
            .execution_options(synchronize_session=False)
        )
        self.db.commit()
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def delete(self, vm: VM) -> VM:
        """Record the wish that the VM is gone (its hold back to the developer at once,
        nothing billed from now) and have its host remove it (see finish_delete); the VM
        is `deleting` until the host confirms, then `deleted`."""
        if vm.intended_state == "deleted":
            return vm  # recorded already: the `deletes` job finishes it, with its backoff
        self._settle(vm, "deleted")  # the hold goes back to the developer
        vm.intended_state, vm.updated_at = "deleted", utcnow()
        if vm.actual_state != "deleted" and not self.awaiting_create(vm):
            vm.actual_state = "deleting"
        converge.mark_intent(vm, timedelta(seconds=self.settings.converge_in_flight))
        self.db.commit()
        self._kick(vm, "delete")
        return vm

    def finish_delete(self, vm: VM) -> bool:
        """Have the host remove a VM wanted deleted. True once it is gone (the host
        confirmed, or it never had it); False while its host is away."""
        if vm.intended_state != "deleted":
            return False
        host = self.db.get(Host, vm.host_id) if vm.host_id else None
        unanswered = self.awaiting_create(vm)
        if host is not None and (vm.agent_vm_id is not None or unanswered):
            if host_status(host, self.settings.heartbeat_ttl) == "offline":
                return self._deleting(vm, f"host {host.id} is offline")
            try:
                if vm.agent_vm_id is None:
                    # The host never answered its create: it may have the VM. Learn its id
                    # with the same key (the agent answers with the one it has) to delete it.
                    agent_vm = self._agent(host).create_vm(
                        self._agent_body(vm), idempotency_key=vm.id
                    )
                    vm.agent_vm_id = agent_vm.vm_id
                    self.db.commit()
                self._agent(host).delete_vm(vm.agent_vm_id)
            except ApiError as exc:
                if exc.status is None or exc.status >= 500:
                    return self._deleting(vm, exc.detail)
                # Already gone on the host is fine; so is a create it refuses (it made none).
                if exc.status != 404 and vm.agent_vm_id is not None:
                    raise UpstreamError(f"the host refused: {exc.detail}") from exc
        # A lease completed if the VM ever ran on its host (it was metered from then on),
        # whatever state a racing delete left it in.
        ran = vm.agent_vm_id is not None and vm.metered_until is not None
        # The user's request and the maintenance loop may both get here: exactly one of
        # them releases the capacity and counts the lease, in one transaction.
        claimed = self.db.execute(
            update(VM)
            .where(VM.id == vm.id, VM.actual_state != "deleted")
            .values(actual_state="deleted", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        self._give_back(vm)
        if claimed.rowcount == 1 and ran and host is not None:  # type: ignore[attr-defined]
            _count_lease(self.db, host.id, completed=True)
        self.db.commit()
        self.db.refresh(vm)
        return True

    def _deleting(self, vm: VM, why: str) -> bool:
        log.info("VM %s: delete deferred until its host answers (%s)", vm.id, why)
        if not self.awaiting_create(vm):  # an unanswered create must be resolved first
            vm.actual_state = "deleting"
        vm.failure_reason = None
        self.db.commit()
        return False

    def logs(self, vm: VM, tail: int, since: str | None = None) -> LogChunk:
        """The VM's console lines from its host (after the marker `since`, when given)."""
        try:
            return self._host_agent(vm).logs_since(vm.agent_vm_id or "", tail, since)
        except ApiError as exc:
            raise self._agent_error(exc) from exc


# Usage that moved less than this since it was stored is not written again: a heartbeat
# every few seconds must not rewrite every VM row.
DISK_USED_STEP = 1 << 20


def record_disk_usage(vms: Iterable[VM], usage: dict[str, int], as_of: datetime) -> None:
    """Store the disk usage a heartbeat reported ({agent vm id: bytes}, measured at
    `as_of`) on the live VMs of that host, when it moved by at least DISK_USED_STEP."""
    for vm in vms:
        used = usage.get(vm.agent_vm_id or "")
        if used is None or (vm.disk_used_at is not None and aware(vm.disk_used_at) >= as_of):
            continue
        if vm.disk_used is None or abs(used - vm.disk_used) >= DISK_USED_STEP:
            vm.disk_used, vm.disk_used_at = used, as_of


def reconcile_inventory(vms: Iterable[VM], inventory: dict[str, str], as_of: datetime) -> int:
    """Apply a heartbeat's VM inventory ({agent vm id: docker state}, observed at `as_of`)
    to `vms`, the live VMs the backend placed on that host: update actual states, mark
    missing ones, and return how many containers the backend does not know. VMs changed
    since `as_of` are left alone (newer news)."""
    known: set[str] = set()
    for vm in vms:
        agent_id = vm.agent_vm_id or ""
        known.add(agent_id)
        if aware(vm.updated_at) >= as_of:
            continue
        if agent_id in inventory:
            observed = _DOCKER_TO_ACTUAL.get(inventory[agent_id], "failed")
            if observed == "stopped" and vm.failure_reason == STOPPED_FOR_FUNDS:
                vm.actual_state = "insufficient_funds"  # stopped for that reason: say why
                continue
            vm.actual_state = observed
        elif vm.actual_state not in ("pending", "failed"):
            vm.actual_state = "missing"
    return len(set(inventory) - known)
