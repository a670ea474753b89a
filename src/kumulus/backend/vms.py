"""Developer VMs end to end: validate, place (scheduler), ask the chosen host's agent, keep
intended vs actual state, and release capacity whenever a VM stops holding it."""

from __future__ import annotations

import builtins
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import billing, paging
from kumulus.backend.billing import STOPPED_FOR_FUNDS, failure_reason, start_metering
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.hosts import bounded_planck, host_status
from kumulus.backend.models import VM, Account, Host, SshKey
from kumulus.backend.scheduler import NoHostFitsError, Want, place, release
from kumulus.backend.schemas import VMCreateIn, VMOut
from kumulus.client import AgentClient, ApiError
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
from kumulus.core.hostnames import (
    HostnameError,
    ssh_command,
    ssh_problem,
    validate_public_host,
)
from kumulus.core.money import format_amount, hourly_price
from kumulus.core.schemas import VMPublic
from kumulus.core.sizes import format_size

log = logging.getLogger(__name__)

# A stop its host has not carried out after this long counts as a failed lease.
STOP_GRACE = timedelta(minutes=10)
PENDING_STOP = ("stopping", "running", "starting", "restarting")

_DOCKER_TO_ACTUAL = {
    "running": "running",
    "exited": "stopped",
    "created": "starting",
    "restarting": "restarting",
    "paused": "stopped",
}


def want_of(vm: VM) -> Want:
    return Want(
        cpu=vm.cpu,
        memory=vm.memory,
        disk=vm.disk,
        region=vm.region or None,
        max_price_hour=vm.max_price_hour,
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


class VMService:
    def __init__(self, db: Session, settings: BackendSettings, keypair: Keypair) -> None:
        self.db = db
        self.settings = settings
        self.keypair = keypair

    # -- views ---------------------------------------------------------------------------

    def money(self, planck: int) -> str:
        return format_amount(planck, self.settings.token_decimals, self.settings.token_symbol)

    def view(self, vm: VM) -> VMOut:
        actual = vm.actual_state
        if vm.host_id and actual not in ("failed", "deleted", "deleting", "insufficient_funds"):
            host = self.db.get(Host, vm.host_id)
            if host is None or host_status(host, self.settings.heartbeat_ttl) == "offline":
                actual = "unreachable"  # never claim running for a host we cannot hear
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
            failure_reason=vm.failure_reason,
            price_per_hour=self.money(price_hour(vm)) if vm.host_id else None,
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
                return existing
        key_line = self._key_line(account, body)
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
            return existing
        return self._place_and_create(vm)

    def _place_and_create(self, vm: VM) -> VM:
        tried: set[str] = set()
        last_error = ""
        for _attempt in range(2):  # the chosen host, then one other
            # Balances first, then the host: the order every money change takes locks in.
            locked, _ = billing.lock_vms(self.db, [vm])
            try:
                placed = place(
                    self.db,
                    want_of(vm),
                    self.settings.heartbeat_ttl,
                    exclude=tried,
                    money=self.money,
                    price_limit=self.settings.max_vm_price_planck,
                    commit=False,
                )
            except NoHostFitsError as exc:
                self.db.rollback()
                if not tried:  # nothing fits at all: no VM to keep
                    self.db.delete(vm)
                    self.db.commit()
                    raise ConflictError(str(exc), code="no_host_fits") from exc
                break
            vm.host_id, vm.reserved, vm.updated_at = placed.host_id, True, utcnow()
            vm.price_cpu_hour = placed.price_cpu_hour
            vm.price_memory_gib_hour = placed.price_memory_gib_hour
            vm.price_disk_gib_hour = placed.price_disk_gib_hour
            try:
                # In the placement's transaction: no hold, no placement.
                billing.take_hold(self.db, vm, locked, self.terms, self.money)
            except PaymentRequiredError:
                self.db.rollback()
                self.db.delete(vm)
                self.db.commit()
                raise
            self.db.commit()
            host = self.db.get(Host, placed.host_id)
            assert host is not None
            try:
                validate_public_host(host.public_ip)
            except HostnameError:
                # Registered before addresses were validated: its VMs would be paid for but
                # never shown an ssh address. Another host, if one fits.
                last_error = f"host {host.id}: its SSH address is not valid"
                self._unplace(vm)
                tried.add(host.id)
                continue
            try:
                agent_vm = self._agent(host).create_vm(self._agent_body(vm), idempotency_key=vm.id)
            except ApiError as exc:
                if exc.status is None:
                    # No answer in time: the host may still be creating it. It stays placed
                    # there (hold and capacity kept, nothing billed yet) and the `creates`
                    # job asks the same host again with the same key until it answers:
                    # adopted or refused, never an unbilled VM left running elsewhere.
                    log.warning(
                        "VM %s: no answer from %s to its create (%s); resolving it there",
                        vm.id, host.id, exc.detail,
                    )  # fmt: skip
                    vm.actual_state, vm.failure_reason, vm.updated_at = "pending", None, utcnow()
                    self.db.commit()
                    return vm
                last_error = f"host {host.id}: {exc.detail}"
                log.warning("VM %s: agent create failed on %s: %s", vm.id, host.id, exc.detail)
                _count_lease(self.db, host.id, completed=False)
                self.db.commit()
                self._unplace(vm)
                tried.add(host.id)
                continue
            self._adopt(vm, host, agent_vm)
            return vm
        vm.actual_state = "failed"
        vm.failure_reason = last_error or "no other host fits"
        vm.updated_at = utcnow()
        self.db.commit()
        raise UpstreamError(f"VM {vm.id} failed: {vm.failure_reason}", code="vm_failed")

    def _adopt(self, vm: VM, host: Host, agent_vm: VMPublic) -> None:
        """The host has the VM: it is paid for from now on (commits)."""
        vm.agent_vm_id = agent_vm.vm_id
        start_metering(vm)
        vm.ssh_host = host.public_ip
        vm.ssh_port = agent_vm.ssh_port
        vm.actual_state = "running" if agent_vm.status == "Running" else "starting"
        vm.updated_at = utcnow()
        self.db.commit()

    def awaiting_create(self, vm: VM) -> bool:
        """Placed, its create sent, no answer from the host yet."""
        return vm.host_id is not None and vm.agent_vm_id is None and vm.actual_state == "pending"

    def resolve_create(self, vm: VM) -> bool:
        """Ask the VM's host again, with the same idempotency key, for a create it did not
        answer: adopt the VM if the host has it (or makes it now), or give the hold and
        capacity back if the host refuses. True once resolved; raises the error family
        while the host is away or failing (the `creates` job tries again later)."""
        self.db.refresh(vm)
        if not self.awaiting_create(vm) or vm.intended_state == "deleted":
            return False
        host = self.db.get(Host, vm.host_id or "")
        if host is None or host_status(host, self.settings.heartbeat_ttl) == "offline":
            raise UnavailableError(f"host {vm.host_id} is offline", code="host_offline")
        try:
            agent_vm = self._agent(host).create_vm(self._agent_body(vm), idempotency_key=vm.id)
        except ApiError as exc:
            if exc.status is None or exc.status >= 500:
                raise self._agent_error(exc) from exc
            # Refused outright: nothing of it exists there.
            _count_lease(self.db, host.id, completed=False)
            self.db.commit()
            self._unplace(vm)
            vm.actual_state, vm.updated_at = "failed", utcnow()
            vm.failure_reason = f"host {host.id}: {exc.detail}"
            self.db.commit()
            return True
        self._adopt(vm, host, agent_vm)
        return True

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
        return AgentClient(host.api_url, host.id, self.keypair)

    def _unplace(self, vm: VM) -> None:
        """Undo a placement whose host did not take the VM: its hold back to the
        developer, its capacity back to the host (commits)."""
        locked, _ = billing.lock_vms(self.db, [vm])
        billing.release(self.db, vm, locked, keep=0)
        if vm.reserved and vm.host_id:
            release(self.db, vm.host_id, want_of(vm), commit=False)
        vm.reserved, vm.host_id = False, None
        self.db.commit()

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

    def _settle(self, vm: VM, to_state: str, strict: bool = False) -> None:
        """Charge what the VM owes in its current state and size its hold for `to_state`,
        in one transaction (committed). `strict`: PaymentRequiredError, nothing changed,
        when the developer's funds cannot cover a full hold in that state."""
        self.db.commit()  # the VM's balances are locked first, in a fresh transaction
        try:
            billing.settle(
                self.db, vm, self.terms, to_state=to_state, strict=strict, money=self.money
            )
            self.db.commit()
        except (PaymentRequiredError, OperationalError, InterfaceError):
            self.db.rollback()
            self.db.refresh(vm)
            raise  # no funds, or no database: the change cannot be made either
        except Exception as exc:
            # A VM whose charge fails (a row that breaks a ledger rule) must still be
            # stoppable and, above all, deletable: the change goes on, unbilled, logged.
            self.db.rollback()
            self.db.refresh(vm)
            if strict:
                raise
            log.warning("VM %s: not metered before the change: %s", vm.id, failure_reason(exc))
            vm.intended_state = to_state
            self.db.commit()

    def start(self, vm: VM) -> VM:
        self._not_deleting(vm)
        before = vm.intended_state
        self._settle(vm, "running", strict=True)
        vm.updated_at = utcnow()
        self.db.commit()
        try:
            agent_vm = self._host_agent(vm).start_vm(vm.agent_vm_id or "")
        except (ApiError, KumulusError) as exc:
            # Not started: it must not be billed as running. Back to what it was.
            self._settle(vm, before)
            if isinstance(exc, KumulusError):
                raise
            raise self._agent_error(exc) from exc
        vm.actual_state = "running" if agent_vm.status == "Running" else "starting"
        vm.failure_reason = None
        self.db.commit()
        return vm

    def stop(self, vm: VM) -> VM:
        self._not_deleting(vm)
        self._settle(vm, "stopped")
        vm.updated_at = utcnow()
        self.db.commit()
        try:
            self._host_agent(vm).stop_vm(vm.agent_vm_id or "")
        except ApiError as exc:
            raise self._agent_error(exc) from exc
        vm.actual_state = "stopped"
        self.db.commit()
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

    def delete(self, vm: VM) -> bool:
        """Delete the VM. True when it is gone; False when its host is away: the VM stays
        `deleting` (capacity still held there) until the host is back and confirms."""
        if vm.intended_state != "deleted":
            self._settle(vm, "deleted")  # the hold goes back to the developer
        vm.intended_state, vm.updated_at = "deleted", utcnow()
        self.db.commit()
        return self.finish_delete(vm)

    def finish_delete(self, vm: VM) -> bool:
        """Ask the host to remove a VM whose intended state is deleted; see `delete`."""
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
            .values(actual_state="deleted", reserved=False, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            if vm.reserved and vm.host_id:
                release(self.db, vm.host_id, want_of(vm), commit=False)
            if ran and host is not None:
                _count_lease(self.db, host.id, completed=True)
        self.db.commit()
        self.db.refresh(vm)
        return True

    def _deleting(self, vm: VM, why: str) -> bool:
        log.info("VM %s: delete deferred until its host answers (%s)", vm.id, why)
        vm.actual_state = "deleting"
        vm.failure_reason = None
        self.db.commit()
        return False

    def logs(self, vm: VM, tail: int) -> str:
        try:
            return self._host_agent(vm).logs(vm.agent_vm_id or "", tail)
        except ApiError as exc:
            raise self._agent_error(exc) from exc


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
