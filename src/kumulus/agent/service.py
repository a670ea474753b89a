"""The agent's VM operations: validation beyond syntax, capacity, ports, idempotency, and
readiness. Transport-free: the HTTP routes (REST and the original aliases) both call this."""

from __future__ import annotations

import builtins
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kumulus import __version__
from kumulus.agent import host_keys
from kumulus.agent.capacity import Resources, measure_capacity, reserved_by, shortfall
from kumulus.agent.cpusets import CpusetAllocator, host_cores
from kumulus.agent.disk_limits import DiskLimits
from kumulus.agent.errors import (
    EngineUnavailableError,
    InsufficientCapacityError,
    NotFoundError,
    UnenforceableError,
    VMFailedError,
    WeakIsolationError,
)
from kumulus.agent.firewall import FirewallState
from kumulus.agent.io_limits import caps_for
from kumulus.agent.io_limits import probe as probe_io
from kumulus.agent.isolation import Isolation
from kumulus.agent.leftovers import Leftovers
from kumulus.agent.lxcfs import Lxcfs, LxcfsStatus
from kumulus.agent.ports import choose_port
from kumulus.agent.runtime import (
    EngineError,
    EngineInfo,
    PortInUseError,
    VMInfo,
    VMNotFoundError,
    VMRuntime,
    VMSpec,
)
from kumulus.agent.sshprobe import banner, default_public_host, probe_host, wait_for_banner
from kumulus.config import AgentSettings
from kumulus.core.hostkeys import HostKey, HostKeyError, parse_host_key
from kumulus.core.hostnames import ssh_command
from kumulus.core.log_times import LogChunk
from kumulus.core.schemas import VM_ID_RE, Capacity, HostInfo, VMCreate, VMPublic, VMStatus
from kumulus.core.sizes import format_size, parse_size

log = logging.getLogger(__name__)

_PORT_RETRIES = 3
_STATUS_OF_STATE: dict[str, VMStatus] = {
    "created": "Created",
    "exited": "Stopped",
    "restarting": "Restarting",
    "paused": "Paused",
}
_IDEMPOTENCY_MAX = 128


class VMService:
    """Thread-safe. Docker (through the runtime) holds all state; this object only caches
    facts about the engine and serialises the decisions that must not race."""

    def __init__(
        self,
        runtime: VMRuntime,
        settings: AgentSettings,
        *,
        firewall: FirewallState | None = None,
        wallet_address: str | None = None,
        on_created: Callable[[float], None] | None = None,
    ) -> None:
        self.runtime = runtime
        # Told the seconds from request to sshd's banner of each create answered Running.
        self.on_created = on_created
        self.settings = settings
        # Kept current by the agent's guard job, which installs the rules again.
        self.firewall = firewall or FirewallState(False, "the firewall is not set up")
        self.wallet_address = wallet_address
        self._create_lock = threading.Lock()
        # Failed creates' VMs still to remove (their ids survive a restart).
        self._leftovers = Leftovers(settings.state_dir / "failed-creates.json")
        # VMs made by a create that has not answered yet: a retry (same idempotency key)
        # waits for that answer rather than race the first request.
        self._creating: set[str] = set()
        self._removing: set[str] = set()  # being removed by remove_leftovers
        engine = self._engine()
        self.engine_info = engine
        self.disk_limits = DiskLimits(engine.root_dir, engine.storage_driver)
        self.io = probe_io(settings, engine.root_dir, engine.cgroup_version)
        self.capacity = measure_capacity(settings, engine.root_dir)
        self.public_host = settings.ssh_public_host or default_public_host(settings.ssh_bind)
        self.lxcfs = Lxcfs(settings.lxcfs_dir)
        self.cpusets = CpusetAllocator(host_cores(), self._read_cpuset)

    def _read_cpuset(self, vm_id: str) -> frozenset[int] | None:
        return self.runtime.inspect(vm_id).spec.cpuset

    def _engine(self) -> EngineInfo:
        try:
            return self.runtime.engine()
        except EngineError as exc:
            raise EngineUnavailableError(str(exc)) from exc

    # -- facts ---------------------------------------------------------------------------

    def disk_quota(self) -> tuple[bool, str]:
        image = self.settings.image
        if not self.runtime.has_image(image):
            return False, f"unknown until the VM image {image} is built"
        if self.runtime.supports_disk_limit(image):
            return True, f"enforced by the {self.engine_info.storage_driver} storage driver"
        return False, (
            f"the {self.engine_info.storage_driver} storage driver here cannot limit a "
            "container's disk (needs btrfs, zfs, or overlay2 on XFS with pquota); VMs can only "
            "be created without a disk size"
        )

    def isolation(self) -> Isolation:
        """What isolates VMs here now (the engine's facts as of the last refresh)."""
        quota, quota_detail = self.disk_quota()
        return Isolation(
            userns_remap=self.engine_info.userns_remap,
            firewall=self.firewall.active,
            firewall_detail=self.firewall.detail,
            disk_quota=quota,
            disk_quota_detail=quota_detail,
            io_limits=self.io.device is not None,
            io_detail=self.io.detail,
            smtp_blocked=self.firewall.smtp_blocked,
            allow_weak=self.settings.allow_weak_isolation,
        )

    def refresh_engine(self) -> None:
        """Read the engine's facts again (userns-remap needs an engine restart to change)."""
        self.engine_info = self._engine()

    def host_info(self) -> HostInfo:
        vms = self._list()
        reserved = reserved_by(vms)
        free = self.capacity - reserved
        quota, quota_detail = self.disk_quota()
        lxcfs = self.lxcfs.probe()
        return HostInfo(
            agent_version=__version__,
            engine_version=self.engine_info.version,
            storage_driver=self.engine_info.storage_driver,
            userns_remap=self.engine_info.userns_remap,
            disk_quota_supported=quota,
            disk_quota_detail=quota_detail,
            vm_isolation=self.firewall.active,
            vm_isolation_detail=self.firewall.detail,
            isolation=self.isolation().report(),
            lxcfs_active=lxcfs.active,
            lxcfs_detail=lxcfs.detail,
            image=self.settings.image,
            image_ready=self.runtime.has_image(self.settings.image),
            ssh_bind=self.settings.ssh_bind,
            ssh_public_host=self.public_host,
            ssh_port_range=(self.settings.ssh_port_min, self.settings.ssh_port_max),
            capacity=_cap(self.capacity),
            reserved=_cap(reserved),
            free=_cap(free),
            vms=len(vms),
            wallet_address=self.wallet_address,
        )

    # -- views ---------------------------------------------------------------------------

    def _status(self, info: VMInfo) -> VMStatus:
        if info.state == "running":
            host = probe_host(info.spec.ssh_bind)
            return "Running" if banner(host, info.spec.ssh_port, timeout=0.5) else "Starting"
        return _STATUS_OF_STATE.get(info.state, "Failed")

    def view(self, info: VMInfo, status: VMStatus | None = None) -> VMPublic:
        spec = info.spec
        host = self.public_host
        host_key = _host_key_of(spec)
        return VMPublic(
            vm_id=spec.vm_id,
            username=spec.username,
            ssh_host=host,
            ssh_port=spec.ssh_port,
            # One builder of ssh lines for the whole system (quoting, IPv6 without brackets).
            ssh_command=ssh_command(host, spec.ssh_port, spec.username),
            status=status or self._status(info),
            state=info.state,
            cpu=spec.cpu,
            memory=format_size(spec.memory),
            disk=None if spec.disk is None else format_size(spec.disk),
            created_at=datetime.fromtimestamp(spec.created_at, UTC),
            host_key=host_key.line if host_key else None,
            host_key_fingerprint=host_key.fingerprint if host_key else None,
            disk_used_bytes=self.disk_limits.used(info.container_id),
        )

    # -- operations ----------------------------------------------------------------------

    def _list(self) -> list[VMInfo]:
        try:
            return self.runtime.list()
        except EngineError as exc:
            raise EngineUnavailableError(str(exc)) from exc

    def _inspect(self, vm_id: str) -> VMInfo:
        if not VM_ID_RE.fullmatch(vm_id):
            raise NotFoundError(f"no VM {vm_id[:40]!r} on this host")
        try:
            return self.runtime.inspect(vm_id)
        except VMNotFoundError as exc:
            raise NotFoundError(str(exc)) from exc
        except EngineError as exc:
            raise EngineUnavailableError(str(exc)) from exc

    def list(self) -> list[VMPublic]:
        """This agent's VMs, oldest first."""
        return [
            self.view(vm)
            for vm in sorted(self._list(), key=lambda v: (v.spec.created_at, v.spec.vm_id))
        ]

    def get(self, vm_id: str) -> VMPublic:
        return self.view(self._inspect(vm_id))

    def create(self, req: VMCreate, idempotency_key: str | None = None) -> tuple[VMPublic, bool]:
        """Create and start a VM; return (view, created). With an idempotency key seen before,
        return that VM instead (created=False): a retried request never makes a second VM.
        The same key with a different request is refused (422)."""
        if idempotency_key is not None and not (0 < len(idempotency_key) <= _IDEMPOTENCY_MAX):
            raise UnenforceableError(f"Idempotency-Key must be 1-{_IDEMPOTENCY_MAX} characters")
        req = self._with_default_disk(req)
        self._check_sizes(req)
        t0 = time.monotonic()
        attempts = 0
        while attempts < _PORT_RETRIES:
            existing: VMInfo | None = None
            failed: EngineError | None = None
            # Handed over in a holder that _finish_create empties: once the key is in the
            # VM, no frame of this request keeps it (nor a traceback of a failure).
            host_key = [host_keys.generate()]
            with self._create_lock:
                t_lock = time.monotonic()
                vms = self._list()
                if idempotency_key is not None:
                    existing = next(
                        (vm for vm in vms if vm.spec.idempotency_key == idempotency_key), None
                    )
                if (
                    existing is not None
                    and not self._busy(existing.spec.vm_id)
                    and existing.state == "created"
                ):
                    # Its first try died before starting it, perhaps before its host key
                    # went in (a key lives in that request's memory only): a fresh VM under
                    # the same key, rather than one whose sshd cannot start. The list leaves
                    # the SSH key out: the request is compared with the inspected spec.
                    _check_same_request(self._inspect(existing.spec.vm_id).spec, req)
                    self._remove_for_retry(existing.spec.vm_id)
                    vms = [vm for vm in vms if vm.spec.vm_id != existing.spec.vm_id]
                    existing = None
                if existing is not None:
                    if self._busy(existing.spec.vm_id):
                        busy = existing.spec.vm_id  # another request (or removal) at work
                    else:
                        busy = None
                        # This retry's while it works on it: another retry waits, and
                        # the leftovers job leaves it alone.
                        self._creating.add(existing.spec.vm_id)
                else:
                    spec = self._place(
                        req,
                        vms,
                        idempotency_key,
                        self._lxcfs_for_new_vm(),
                        host_key[0].public_line,
                    )
                    t_placed = time.monotonic()
                    try:
                        self.runtime.create(spec, self.settings.image, self.settings.pids_limit)
                        self._creating.add(spec.vm_id)
                    except EngineError as exc:
                        # The engine may have made the container before it failed (died
                        # mid-call, say): nothing will ever ask for it again.
                        self._leftovers.add(spec.vm_id)
                        failed = exc
                    t_created = time.monotonic()
            if existing is None and failed is not None:
                self.remove_leftovers()
                raise VMFailedError(str(failed)) from failed
            if existing is not None:
                # Outside the lock: waiting for a retried VM must not block other creates.
                if busy is not None:
                    self._wait_created(busy)
                    continue  # and look again: it may have failed meanwhile
                return self._retry(existing, req), False
            attempts += 1
            try:
                return self._finish_create(spec, host_key, t0, t_lock, t_placed, t_created), True
            except PortInUseError:
                continue
            finally:
                with self._create_lock:
                    self._creating.discard(spec.vm_id)
        raise InsufficientCapacityError(
            "could not bind an SSH port after several tries; retry later"
        )

    def _finish_create(
        self,
        spec: VMSpec,
        holder: builtins.list[host_keys.HostKeyPair],
        t0: float,
        t_lock: float,
        t_placed: float,
        t_created: float,
    ) -> VMPublic:
        """The rest of a create once its container exists: host key, start, sshd. Whatever
        error it answers, the VM is abandoned (`_abandon`): the backend gives up a VM whose
        create answered an error, so nothing would ever name it again. PortInUseError: try
        another port."""
        # Outside the create lock: the container (with its labels: port, reservation)
        # already exists, so the next create accounts for it.
        try:
            try:
                host_key = holder.pop()
                self.runtime.install_host_key(spec.vm_id, host_key.private_openssh)
                # From now on the private key lives in the VM's files only.
                del host_key
                t_keyed = time.monotonic()
                info = self.runtime.start(spec.vm_id)
            except PortInUseError:
                log.warning("port %s taken by another program; choosing another", spec.ssh_port)
                raise
            except EngineError as exc:
                raise VMFailedError(str(exc)) from exc
            t_started = time.monotonic()
            # The engine may die while sshd comes up: inspecting it then is a 503.
            view = self._await_ready(info)
        except BaseException:
            self._abandon(spec.vm_id)
            raise
        t_ready = time.monotonic()
        log.info(
            "created VM %s for %s (cpu=%g memory=%s disk=%s port=%d) in %.2f s: "
            "wait %.2f, place %.2f, engine create %.2f, host key %.2f, start %.2f, sshd %.2f",
            spec.vm_id,
            spec.username,
            spec.cpu,
            format_size(spec.memory),
            "-" if spec.disk is None else format_size(spec.disk),
            spec.ssh_port,
            t_ready - t0,
            t_lock - t0,
            t_placed - t_lock,
            t_created - t_placed,
            t_keyed - t_created,
            t_started - t_keyed,
            t_ready - t_started,
        )
        if view.status == "Running" and self.on_created is not None:
            self.on_created(t_ready - t0)
        return view

    def _with_default_disk(self, req: VMCreate) -> VMCreate:
        """No disk size asked: the host's default where it can enforce one (never unlimited
        disk on a host that can limit it), none where it cannot (and the view says so)."""
        if req.disk is None and self.disk_quota()[0]:
            return req.model_copy(update={"disk": parse_size(self.settings.default_disk)})
        return req

    def _retry(self, vm: VMInfo, req: VMCreate) -> VMPublic:
        """A retried create of `vm` (in `_creating` for this request). A VM its first
        request abandoned (it answered an error) stays listed for removal unless this
        retry answers it: a failed retry must not leave it behind for good, and one the
        backend adopted from its first answer is never listed, so never removed."""
        vm_id = vm.spec.vm_id
        answered = False
        try:
            view = self._retried(vm, req)
            answered = True
        finally:
            with self._create_lock:
                self._creating.discard(vm_id)
                if answered:
                    self._leftovers.discard(vm_id)
        return view

    def _retried(self, vm: VMInfo, req: VMCreate) -> VMPublic:
        info = self._inspect(vm.spec.vm_id)
        spec = info.spec
        _check_same_request(spec, req)
        # The first attempt died between create and start, or its VM stopped while starting
        # and could not be removed (the engine went down under it: the chaos test's dockerd
        # kill). Either way nothing ever ran there and nobody stopped it on purpose (a stop
        # needs the VM id, which only an answered create gives): start it, so that a retry
        # ends in a VM rather than the same failure for ever (and a delete that learns the
        # VM id through a retried create is never stuck).
        if info.state in ("created", "exited"):
            try:
                info = self.runtime.start(spec.vm_id)
            except EngineError as exc:
                raise VMFailedError(str(exc)) from exc
        return self._await_ready(info)

    def _check_isolation(self) -> None:
        isolation = self.isolation()
        if isolation.full:
            return
        if self.settings.allow_weak_isolation:
            log.warning("creating a VM without full isolation: %s", isolation.problem())
            return
        raise WeakIsolationError(
            f"this host does not isolate VMs: missing {isolation.problem()}. The provider "
            "must fix that, or set KUMULUS_AGENT_ALLOW_WEAK_ISOLATION=1 to accept VMs anyway"
        )

    def _check_sizes(self, req: VMCreate) -> None:
        if not self.runtime.has_image(self.settings.image):
            raise EngineUnavailableError(
                f"the VM base image {self.settings.image} is not built yet; "
                "the provider must run `kumulus image build`"
            )
        self._check_isolation()
        min_memory = parse_size(self.settings.min_memory)
        if req.memory < min_memory:
            raise UnenforceableError(f"memory must be at least {self.settings.min_memory}")
        if req.disk is not None:
            min_disk = parse_size(self.settings.min_disk)
            if req.disk < min_disk:
                raise UnenforceableError(f"disk must be at least {self.settings.min_disk}")
            supported, detail = self.disk_quota()
            if not supported:
                raise UnenforceableError(f"this host cannot enforce a disk size: {detail}")

    def _lxcfs_for_new_vm(self) -> LxcfsStatus:
        status = self.lxcfs.probe()
        if not status.active:
            log.warning("creating a VM without lxcfs (it sees the host's size): %s", status.detail)
        return status

    def _place(
        self,
        req: VMCreate,
        vms: builtins.list[VMInfo],
        idempotency_key: str | None,
        lxcfs: LxcfsStatus,
        host_key: str,
    ) -> VMSpec:
        want = Resources(cpu=req.cpu, memory=req.memory, disk=req.disk or 0)
        free = self.capacity - reserved_by(vms)
        problem = shortfall(want, free)
        if problem:
            raise InsufficientCapacityError(f"not enough free capacity on this host: {problem}")
        port = choose_port(
            self.settings.ssh_bind,
            self.settings.ssh_port_min,
            self.settings.ssh_port_max,
            (vm.spec.ssh_port for vm in vms),
        )
        if port is None:
            raise InsufficientCapacityError(
                f"no free SSH port in {self.settings.ssh_port_min}-{self.settings.ssh_port_max}"
            )
        vm_id = secrets.token_hex(8)
        io = caps_for(self.settings, req.cpu, req.disk)
        cores = self.cpusets.choose(req.cpu, vms)
        self.cpusets.remember(vm_id, cores)
        return VMSpec(
            vm_id=vm_id,
            username=req.username,
            ssh_key=req.ssh_key,
            cpu=req.cpu,
            memory=req.memory,
            disk=req.disk,
            ssh_bind=self.settings.ssh_bind,
            ssh_port=port,
            created_at=round(time.time(), 3),
            idempotency_key=idempotency_key,
            cpuset=cores,
            lxcfs_dir=str(self.lxcfs.root) if lxcfs.active else None,
            lxcfs_files=lxcfs.files,
            host_key=host_key,
            io_device=self.io.device,
            io_bps=io.bps if self.io.device else 0,
            io_iops=io.iops if self.io.device else 0,
        )

    def _await_ready(self, info: VMInfo) -> VMPublic:
        """Wait for the SSH banner. If the VM dies first, report why (VMFailedError)."""
        spec = info.spec
        deadline = time.monotonic() + self.settings.ssh_ready_timeout

        def alive() -> bool:
            try:
                return self.runtime.inspect(spec.vm_id).state in ("running", "restarting")
            except EngineError:
                return False

        if info.state in ("running", "restarting") and wait_for_banner(
            probe_host(spec.ssh_bind), spec.ssh_port, deadline, alive
        ):
            return self.view(self._inspect(spec.vm_id), status="Running")
        current = self._inspect(spec.vm_id)
        if current.state == "running":
            return self.view(current, status="Starting")  # slow host: still coming up
        tail = ""
        with contextlib.suppress(EngineError):
            tail = self.runtime.logs(spec.vm_id, tail=20).strip()
        raise VMFailedError(
            f"VM {spec.vm_id} stopped while starting ({current.state}): {tail[-500:]}"
        )

    def start(self, vm_id: str) -> VMPublic:
        spec = self._inspect(vm_id).spec
        if spec.lxcfs_dir:
            lxcfs = self.lxcfs.probe()
            if not lxcfs.active and spec.lxcfs_dir == str(self.lxcfs.root):
                # Docker would refuse with a bind-mount error that helps nobody.
                raise EngineUnavailableError(
                    f"this VM's /proc comes from lxcfs, which is down ({lxcfs.detail}); "
                    "the provider must restart lxcfs"
                )
        try:
            info = self.runtime.start(vm_id)
        except PortInUseError as exc:
            raise InsufficientCapacityError(
                f"{exc}; the port is used by another program on the host"
            ) from exc
        except EngineError as exc:
            raise VMFailedError(str(exc)) from exc
        return self._await_ready(info)

    def stop(self, vm_id: str) -> VMPublic:
        self._inspect(vm_id)
        try:
            return self.view(self.runtime.stop(vm_id))
        except EngineError as exc:
            raise VMFailedError(str(exc)) from exc

    def delete(self, vm_id: str) -> None:
        self._inspect(vm_id)
        try:
            self.runtime.destroy(vm_id)
        except VMNotFoundError as exc:
            raise NotFoundError(str(exc)) from exc
        except EngineError as exc:
            raise VMFailedError(str(exc)) from exc
        log.info("deleted VM %s", vm_id)

    def logs(self, vm_id: str, tail: int = 200, since: str | None = None) -> LogChunk:
        """The VM's last `tail` console lines (after the marker `since`, when given)."""
        self._inspect(vm_id)
        try:
            return self.runtime.logs_since(vm_id, max(1, min(tail, 10_000)), since)
        except EngineError as exc:
            raise VMFailedError(str(exc)) from exc

    def _busy(self, vm_id: str) -> bool:
        """A request works on `vm_id`, or the leftovers job is removing it (the create
        lock held)."""
        return vm_id in self._creating or vm_id in self._removing

    def _wait_created(self, vm_id: str) -> None:
        """Until the request working on `vm_id` has answered, or its removal is done (a
        retry of its create waits)."""
        deadline = time.monotonic() + self.settings.ssh_ready_timeout + 120
        while time.monotonic() < deadline:
            with self._create_lock:
                if not self._busy(vm_id):
                    return
            time.sleep(0.05)
        raise EngineUnavailableError(f"VM {vm_id} is still being created; retry later")

    def _remove_for_retry(self, vm_id: str) -> None:
        """Remove a VM a retried create replaces (the create lock held)."""
        try:
            self.runtime.destroy(vm_id)
        except VMNotFoundError:
            pass
        except EngineError as exc:
            raise VMFailedError(str(exc)) from exc
        self._leftovers.discard(vm_id)

    def _abandon(self, vm_id: str) -> None:
        """A create failed after its container was made: remove the container now if the
        engine lets us, else later (the `leftovers` job). Listed before this request lets
        go of it (`_creating`): a retry that then takes it over unlists it only if it
        answers it."""
        with self._create_lock:
            self._leftovers.add(vm_id)
            self._creating.discard(vm_id)
        self.remove_leftovers()

    def sweep_unstarted(self) -> builtins.list[str]:
        """List for removal every VM never started that no request is working on (job
        `guard`): the engine can make a container after the create call timed out, once
        that create had answered an error and dropped it. Raises EngineError."""
        with self._create_lock:
            found = [
                vm.spec.vm_id
                for vm in self.runtime.list()
                if vm.state == "created" and not self._busy(vm.spec.vm_id)
            ]
            for vm_id in found:
                self._leftovers.add(vm_id)
        return found

    def remove_leftovers(self) -> builtins.list[str]:
        """Remove the VMs of failed creates that are still there (job `leftovers`); returns
        the ids removed or found gone. One the engine will not remove now stays listed.
        The engine calls run without the create lock (one removal that hangs must not
        hold up every create); a VM a retry is working on is left for a later run."""
        with self._create_lock:
            todo = [vm_id for vm_id in self._leftovers.ids() if not self._busy(vm_id)]
            self._removing.update(todo)
        done: list[str] = []
        try:
            for vm_id in todo:
                try:
                    self.runtime.destroy(vm_id)
                    log.info("removed VM %s, left by a failed create", vm_id)
                except VMNotFoundError:
                    pass
                except EngineError as exc:
                    log.warning("VM %s of a failed create is not removed yet: %s", vm_id, exc)
                    continue
                done.append(vm_id)
        finally:
            with self._create_lock:
                self._removing.difference_update(todo)
                for vm_id in done:
                    self._leftovers.discard(vm_id)
        return done


def _check_same_request(spec: VMSpec, req: VMCreate) -> None:
    """A retried create must ask for what its key's first request asked (422 if not)."""
    asked = (req.username, req.ssh_key, req.cpu, req.memory, req.disk)
    if asked != (spec.username, spec.ssh_key, spec.cpu, spec.memory, spec.disk):
        raise UnenforceableError(
            "this Idempotency-Key was used for a different request; use a new key"
        )


def _host_key_of(spec: VMSpec) -> HostKey | None:
    """The VM's host key as read back from the engine, or None (VMs made before the agent
    chose host keys; a label that is not a key is logged and not served)."""
    if spec.host_key is None:
        return None
    try:
        return parse_host_key(spec.host_key)
    except HostKeyError as exc:
        log.warning("VM %s: its host key label is not served: %s", spec.vm_id, exc)
        return None


def _cap(r: Resources) -> Capacity:
    return Capacity(cpu=round(r.cpu, 6), memory=r.memory, disk=r.disk)
