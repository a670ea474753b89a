"""An in-memory VMRuntime for testing the layers above the engine (API, service, stats)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

from kumulus.agent.firewall import FirewallState
from kumulus.agent.runtime import (
    EngineError,
    EngineInfo,
    VMInfo,
    VMNotFoundError,
    VMSpec,
    VMUsage,
)
from kumulus.core import log_times
from kumulus.core.log_times import LogChunk


def _stamp() -> str:
    # Docker's RFC3339Nano (here to the microsecond).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeRuntime:
    def __init__(
        self,
        *,
        disk_quota: bool = True,
        image: bool = True,
        userns_remap: bool = True,
        firewall: bool = True,
    ) -> None:
        """Fully isolated by default (userns-remap, firewall, disk quota), as a provider
        host set up by provider-setup.sh is; each part can be taken away."""
        self.vms: dict[str, VMInfo] = {}
        self.disk_quota = disk_quota
        self.image = image
        self.userns_remap = userns_remap
        self.firewall = firewall
        self.smtp_allowed: bool | None = None  # what the agent last asked for
        self.create_calls = 0
        self.restarts: list[str] = []
        self.create_delay = 0.0
        self.fail_create: str | None = None
        self.host_keys: dict[str, bytes] = {}  # vm id -> private host key installed
        self.console: dict[str, list[str]] = {}  # vm id -> "<time> <line>\n", as Docker's
        self._lock = threading.Lock()

    def create(self, spec: VMSpec, image: str, pids_limit: int) -> VMInfo:
        self.create_calls += 1
        if self.fail_create:
            raise EngineError(self.fail_create)
        time.sleep(self.create_delay)
        info = VMInfo(spec=spec, state="created")
        with self._lock:
            self.vms[spec.vm_id] = info
        return info

    def _get(self, vm_id: str) -> VMInfo:
        try:
            return self.vms[vm_id]
        except KeyError:
            raise VMNotFoundError(f"no VM {vm_id} on this host") from None

    def _set(self, vm_id: str, state: str) -> VMInfo:
        info = replace(self._get(vm_id), state=state)
        self.vms[vm_id] = info
        return info

    def install_host_key(self, vm_id: str, private_key: bytes) -> None:
        self._get(vm_id)
        self.host_keys[vm_id] = private_key

    def start(self, vm_id: str) -> VMInfo:
        spec = self._get(vm_id).spec
        if spec.host_key and vm_id not in self.host_keys:
            # As the VM's entrypoint does: no sshd without the key the agent reported.
            raise EngineError(f"VM {vm_id}: the host key the agent chose is missing")
        return self._set(vm_id, "running")

    def stop(self, vm_id: str, timeout: int = 10) -> VMInfo:
        return self._set(vm_id, "exited")

    def restart(self, vm_id: str, timeout: int = 10) -> VMInfo:
        self.restarts.append(vm_id)
        return self._set(vm_id, "running")

    def destroy(self, vm_id: str) -> None:
        self._get(vm_id)
        del self.vms[vm_id]

    def inspect(self, vm_id: str) -> VMInfo:
        return self._get(vm_id)

    def list(self) -> list[VMInfo]:
        """As Docker's list API: without what only an inspect gives (the SSH key, from the
        container's environment)."""
        with self._lock:
            return [replace(vm, spec=replace(vm.spec, ssh_key="")) for vm in self.vms.values()]

    def logs(self, vm_id: str, tail: int) -> str:
        return self.logs_since(vm_id, tail, None).text

    def logs_since(self, vm_id: str, tail: int, since: str | None) -> LogChunk:
        self._get(vm_id)
        if since is not None:
            log_times.epoch(since)  # what the Docker driver hands the engine as its `since`
        with self._lock:
            lines = self.console.setdefault(vm_id, [f"{_stamp()} sshd started\n"])
            stamped = "".join(lines[-tail:])
        return log_times.after(stamped, since)

    def say(self, vm_id: str, line: str) -> None:
        """The VM writes `line` to its console (a test's stand-in for its programs)."""
        with self._lock:
            lines = self.console.setdefault(vm_id, [f"{_stamp()} sshd started\n"])
            lines.append(f"{_stamp()} {line}\n")

    def usage(self, vm_id: str) -> VMUsage:
        self._get(vm_id)
        return VMUsage(
            cpu_seconds=1.5, memory_bytes=10 << 20, memory_limit=self.vms[vm_id].spec.memory
        )

    def engine(self) -> EngineInfo:
        return EngineInfo(
            version="fake",
            storage_driver="btrfs" if self.disk_quota else "overlay2",
            root_dir="/",
            userns_remap=self.userns_remap,
            ncpu=2,
            mem_total=8 << 30,
        )

    def isolate_networks(self, allow_smtp: bool) -> FirewallState:
        self.smtp_allowed = allow_smtp
        if not self.firewall:
            return FirewallState(False, "iptables is not installed: VMs can reach the host")
        return FirewallState(True, "fake firewall", smtp_blocked=not allow_smtp)

    def supports_disk_limit(self, image: str) -> bool:
        return self.disk_quota

    def has_image(self, image: str) -> bool:
        return self.image

    def recover(self) -> list[str]:
        gone = [vm_id for vm_id, vm in self.vms.items() if vm.state == "created"]
        for vm_id in gone:
            del self.vms[vm_id]
        return gone
