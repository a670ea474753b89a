"""VMRuntime on the Docker Engine API (docker-py).

Docker is the source of truth: each VM is one container plus one bridge network, both
labelled, and a VM's whole spec is read back from its labels, so an agent restart loses
nothing. Hardening lives here because it is a property of how containers are created.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import tarfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig

from kumulus.agent.firewall import FirewallState, ensure_isolation
from kumulus.agent.runtime.base import (
    EngineError,
    EngineInfo,
    PortInUseError,
    VMInfo,
    VMNotFoundError,
    VMSpec,
    VMUsage,
)
from kumulus.core import log_times
from kumulus.core.log_times import LogChunk

LABEL_VM = "io.kumulus.vm"
LABEL_AGENT = "io.kumulus.agent"  # which agent owns the VM (several may share one engine)
_L = "io.kumulus.vm."
# Where the VM's sshd reads its host key (image/sshd-kumulus.conf); the image's entrypoint
# checks it against KUMULUS_HOST_KEY before starting sshd.
HOST_KEY_DIR = "/etc/ssh"
HOST_KEY_FILE = "ssh_host_ed25519_key"

# sshd and sudo need these; everything else Docker grants by default (NET_RAW, MKNOD,
# SETFCAP, SETPCAP, ...) is dropped. no-new-privileges is deliberately not set: the VM user
# is promised sudo inside the VM, which is a setuid program.
VM_CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "AUDIT_WRITE",
]


def container_name(vm_id: str) -> str:
    return f"kumulus-{vm_id}"


def bridge_name(vm_id: str) -> str:
    # Linux interface names are at most 15 bytes; the firewall matches the "kmvm" prefix.
    return f"kmvm{vm_id[:11]}"


def _labels(spec: VMSpec, owner: str) -> dict[str, str]:
    labels = {
        LABEL_VM: "1",
        LABEL_AGENT: owner,
        _L + "id": spec.vm_id,
        _L + "username": spec.username,
        _L + "cpu": repr(spec.cpu),
        _L + "memory": str(spec.memory),
        _L + "disk": "" if spec.disk is None else str(spec.disk),
        _L + "ssh_bind": spec.ssh_bind,
        _L + "ssh_port": str(spec.ssh_port),
        _L + "created_at": repr(spec.created_at),
    }
    if spec.idempotency_key:
        labels[_L + "idempotency_key"] = spec.idempotency_key
    if spec.lxcfs_dir:
        labels[_L + "lxcfs_dir"] = spec.lxcfs_dir
    if spec.host_key:
        labels[_L + "host_key"] = spec.host_key
    return labels


def _environment(spec: VMSpec) -> dict[str, str]:
    env = {"KUMULUS_USER": spec.username, "KUMULUS_SSH_KEY": spec.ssh_key}
    if spec.host_key:
        env["KUMULUS_HOST_KEY"] = spec.host_key
    return env


def host_key_archive(private_key: bytes) -> bytes:
    """A tar of the one file `HOST_KEY_FILE` (root, 0600) holding `private_key`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        member = tarfile.TarInfo(HOST_KEY_FILE)
        member.size, member.mode = len(private_key), 0o600
        member.uid = member.gid = 0
        member.uname = member.gname = "root"
        tar.addfile(member, io.BytesIO(private_key))
    return buf.getvalue()


def parse_cpuset(text: str | None) -> frozenset[int] | None:
    """Docker's CpusetCpus ("0-2,5") as core numbers; None when the VM is not pinned."""
    cores: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return frozenset(cores) or None


def format_cpuset(cores: frozenset[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))


def _lxcfs_binds(spec: VMSpec) -> dict[str, dict[str, str]]:
    if not spec.lxcfs_dir:
        return {}
    root = spec.lxcfs_dir.rstrip("/")
    return {f"{root}/{rel}": {"bind": f"/{rel}", "mode": "ro"} for rel in spec.lxcfs_files}


def _bound_lxcfs_files(lxcfs_dir: str | None, binds: list[str] | None) -> tuple[str, ...]:
    if not lxcfs_dir:
        return ()
    prefix = lxcfs_dir.rstrip("/") + "/"
    found = []
    for bind in binds or []:
        source = bind.split(":", 1)[0]
        if source.startswith(prefix):
            found.append(source[len(prefix) :])
    return tuple(sorted(found))


def _spec_from(
    labels: dict[str, str], env: list[str] | None, host_config: dict[str, Any] | None = None
) -> VMSpec:
    """The spec from labels (and, when inspecting, from Env and HostConfig: the SSH key,
    the cores the VM is pinned to and its lxcfs mounts, which the list API omits)."""
    ssh_key = ""
    for item in env or []:
        if item.startswith("KUMULUS_SSH_KEY="):
            ssh_key = item.split("=", 1)[1]
    disk = labels.get(_L + "disk", "")
    lxcfs_dir = labels.get(_L + "lxcfs_dir") or None
    host_config = host_config or {}
    return VMSpec(
        vm_id=labels[_L + "id"],
        username=labels[_L + "username"],
        ssh_key=ssh_key,
        cpu=float(labels[_L + "cpu"]),
        memory=int(labels[_L + "memory"]),
        disk=int(disk) if disk else None,
        ssh_bind=labels[_L + "ssh_bind"],
        ssh_port=int(labels[_L + "ssh_port"]),
        created_at=float(labels[_L + "created_at"]),
        idempotency_key=labels.get(_L + "idempotency_key") or None,
        cpuset=parse_cpuset(host_config.get("CpusetCpus")),
        lxcfs_dir=lxcfs_dir,
        lxcfs_files=_bound_lxcfs_files(lxcfs_dir, host_config.get("Binds")),
        host_key=labels.get(_L + "host_key") or None,
        **_io_caps(host_config),
    )


def _io_caps(host_config: dict[str, Any]) -> dict[str, Any]:
    """The VM's disk I/O caps as VMSpec fields, from Docker's blkio device limits."""
    bps = host_config.get("BlkioDeviceWriteBps") or []
    iops = host_config.get("BlkioDeviceWriteIOps") or []
    if not bps or not iops:
        return {}
    return {
        "io_device": str(bps[0].get("Path")),
        "io_bps": int(bps[0].get("Rate", 0)),
        "io_iops": int(iops[0].get("Rate", 0)),
    }


_F = TypeVar("_F", bound=Callable[..., Any])


def _engine_errors(func: _F) -> _F:
    """No Docker or transport exception leaves the driver: unknown objects become
    VMNotFoundError, an unreachable engine a retryable EngineError."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EngineError:
            raise
        except NotFound as exc:
            raise VMNotFoundError(f"not found: {_explain(exc)}") from exc
        except (DockerException, requests.RequestException) as exc:
            raise EngineError(f"Docker engine error: {_explain(exc)}", retryable=True) from exc

    return wrapper  # type: ignore[return-value]


class DockerRuntime:
    """VMRuntime backed by a Docker engine reached through `base_url` (default: environment).

    `owner` is this agent's id: it only sees and touches VMs labelled with it.
    """

    def __init__(self, owner: str, base_url: str | None = None, timeout: int = 60) -> None:
        self.owner = owner
        try:
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                self._client = docker.from_env(timeout=timeout)
        except DockerException as exc:
            raise EngineError(f"cannot reach the Docker engine: {exc}", retryable=True) from exc
        self._api = self._client.api
        self._disk_probe: dict[str, bool] = {}
        self._probe_lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        return self._client

    # -- lookups -------------------------------------------------------------------------

    def _inspect_raw(self, vm_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = self._api.inspect_container(container_name(vm_id))
        except NotFound as exc:
            raise VMNotFoundError(f"no VM {vm_id} on this host") from exc
        except (APIError, DockerException) as exc:
            raise EngineError(f"Docker engine error: {exc}", retryable=True) from exc
        labels = data.get("Config", {}).get("Labels") or {}
        # A container that merely has our name but not our label is not ours to touch.
        if (
            labels.get(LABEL_VM) != "1"
            or labels.get(LABEL_AGENT) != self.owner
            or labels.get(_L + "id") != vm_id
        ):
            raise VMNotFoundError(f"no VM {vm_id} on this host")
        return data

    @staticmethod
    def _info_from_inspect(data: dict[str, Any]) -> VMInfo:
        state = data.get("State", {})
        nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), None)
        return VMInfo(
            spec=_spec_from(
                data["Config"]["Labels"], data["Config"].get("Env"), data.get("HostConfig")
            ),
            state=str(state.get("Status", "unknown")),
            exit_code=state.get("ExitCode"),
            started_at=state.get("StartedAt"),
            ip_address=ip,
            container_id=data.get("Id"),
            pid=int(state.get("Pid") or 0) or None,
        )

    @_engine_errors
    def inspect(self, vm_id: str) -> VMInfo:
        return self._info_from_inspect(self._inspect_raw(vm_id))

    @_engine_errors
    def list(self) -> list[VMInfo]:
        try:
            rows = self._api.containers(
                all=True, filters={"label": [f"{LABEL_VM}=1", f"{LABEL_AGENT}={self.owner}"]}
            )
        except (APIError, DockerException) as exc:
            raise EngineError(f"Docker engine error: {exc}", retryable=True) from exc
        result = []
        for row in rows:
            labels = row.get("Labels") or {}
            if _L + "id" not in labels:
                continue
            # The list API omits Env; the key is only needed when inspecting one VM.
            result.append(
                VMInfo(
                    spec=_spec_from(labels, None),
                    state=str(row.get("State")),
                    container_id=str(row.get("Id")),
                )
            )
        return result

    # -- lifecycle -----------------------------------------------------------------------

    @_engine_errors
    def create(self, spec: VMSpec, image: str, pids_limit: int) -> VMInfo:
        labels = _labels(spec, self.owner)
        name = container_name(spec.vm_id)
        network = None
        try:
            network = self._client.networks.create(
                name,
                driver="bridge",
                labels=labels,
                options={
                    "com.docker.network.bridge.name": bridge_name(spec.vm_id),
                    "com.docker.network.bridge.enable_icc": "false",
                },
            )
            kwargs: dict[str, Any] = {}
            if spec.disk is not None:
                kwargs["storage_opt"] = {"size": str(spec.disk)}
            if spec.cpuset:
                kwargs["cpuset_cpus"] = format_cpuset(spec.cpuset)
            binds = _lxcfs_binds(spec)
            if binds:
                kwargs["volumes"] = binds
            if spec.io_device:
                bps = [{"Path": spec.io_device, "Rate": spec.io_bps}]
                iops = [{"Path": spec.io_device, "Rate": spec.io_iops}]
                kwargs.update(
                    device_read_bps=bps,
                    device_write_bps=bps,
                    device_read_iops=iops,
                    device_write_iops=iops,
                )
            container = self._client.containers.create(
                image,
                name=name,
                hostname=f"vm-{spec.vm_id[:8]}",
                labels=labels,
                # Data only: the image's fixed entrypoint reads these; no shell, no Dockerfile.
                environment=_environment(spec),
                network=name,
                ports={"22/tcp": (spec.ssh_bind, spec.ssh_port)},
                nano_cpus=int(spec.cpu * 1e9),
                mem_limit=spec.memory,
                memswap_limit=spec.memory,  # no swap beyond the memory limit
                pids_limit=pids_limit,
                cap_drop=["ALL"],
                cap_add=VM_CAPABILITIES,
                restart_policy={"Name": "unless-stopped"},
                init=True,
                log_config=LogConfig(type="json-file", config={"max-size": "5m", "max-file": "2"}),
                detach=True,
                **kwargs,
            )
        except ImageNotFound as exc:
            self._cleanup(name, network)
            raise EngineError(
                f"VM base image {image} is missing: run `kumulus image build`"
            ) from exc
        except (APIError, DockerException) as exc:
            self._cleanup(name, network)
            raise EngineError(f"Docker could not create the VM: {_explain(exc)}") from exc
        del container
        return self.inspect(spec.vm_id)

    @_engine_errors
    def install_host_key(self, vm_id: str, private_key: bytes) -> None:
        self._inspect_raw(vm_id)
        try:
            # A file in the VM's own filesystem, not an environment variable: Docker keeps
            # the environment in the container's config and shows it to `docker inspect`.
            self._api.put_archive(
                container_name(vm_id), HOST_KEY_DIR, host_key_archive(private_key)
            )
        except APIError as exc:
            raise EngineError(
                f"Docker could not write the host key of VM {vm_id}: {_explain(exc)}"
            ) from exc

    def _cleanup(self, name: str, network: Any) -> None:
        with contextlib.suppress(NotFound, APIError, DockerException):
            self._api.remove_container(name, force=True, v=True)
        if network is not None:
            with contextlib.suppress(NotFound, APIError, DockerException):
                network.remove()

    @_engine_errors
    def start(self, vm_id: str) -> VMInfo:
        self._inspect_raw(vm_id)
        try:
            self._api.start(container_name(vm_id))
        except APIError as exc:
            text = _explain(exc)
            if "port is already allocated" in text or "address already in use" in text:
                raise PortInUseError(f"SSH port of VM {vm_id} is taken: {text}") from exc
            raise EngineError(f"Docker could not start VM {vm_id}: {text}") from exc
        return self.inspect(vm_id)

    @_engine_errors
    def stop(self, vm_id: str, timeout: int = 10) -> VMInfo:
        self._inspect_raw(vm_id)
        try:
            self._api.stop(container_name(vm_id), timeout=timeout)
        except APIError as exc:
            raise EngineError(f"Docker could not stop VM {vm_id}: {_explain(exc)}") from exc
        return self.inspect(vm_id)

    @_engine_errors
    def restart(self, vm_id: str, timeout: int = 10) -> VMInfo:
        self._inspect_raw(vm_id)
        try:
            self._api.restart(container_name(vm_id), timeout=timeout)
        except APIError as exc:
            raise EngineError(f"Docker could not restart VM {vm_id}: {_explain(exc)}") from exc
        return self.inspect(vm_id)

    @_engine_errors
    def destroy(self, vm_id: str) -> None:
        name = container_name(vm_id)
        found = False
        try:
            self._inspect_raw(vm_id)
            found = True
            self._api.remove_container(name, force=True, v=True)
        except (VMNotFoundError, NotFound):
            pass
        except APIError as exc:
            raise EngineError(f"Docker could not remove VM {vm_id}: {_explain(exc)}") from exc
        # The network goes too, also when a crash left it without its container.
        try:
            net = self._client.networks.get(name)
            labels = net.attrs.get("Labels") or {}
            if labels.get(LABEL_AGENT) == self.owner and labels.get(_L + "id") == vm_id:
                net.remove()
                found = True
        except NotFound:
            pass
        except APIError as exc:
            raise EngineError(f"Docker could not remove the network of {vm_id}: {exc}") from exc
        if not found:
            raise VMNotFoundError(f"no VM {vm_id} on this host")

    @_engine_errors
    def recover(self) -> builtins.list[str]:
        """Clean what a crash mid-create could leave: containers created but never started
        (their create request never got an answer) and networks without their container.
        Call only at agent start, when no create can be in flight. Returns what it removed."""
        removed: builtins.list[str] = []
        for vm in self.list():
            if vm.state == "created":
                self.destroy(vm.spec.vm_id)
                removed.append(f"unstarted VM {vm.spec.vm_id}")
        live = {vm.spec.vm_id for vm in self.list()}
        nets = self._api.networks(
            filters={"label": [f"{LABEL_VM}=1", f"{LABEL_AGENT}={self.owner}"]}
        )
        for net in nets:
            vm_id = (net.get("Labels") or {}).get(_L + "id", "")
            if vm_id and vm_id not in live:
                try:
                    self._api.remove_network(net["Id"])
                    removed.append(f"orphan network of {vm_id}")
                except (NotFound, APIError):
                    pass
        return removed

    @_engine_errors
    def logs(self, vm_id: str, tail: int) -> str:
        self._inspect_raw(vm_id)
        raw: bytes = self._api.logs(container_name(vm_id), tail=tail, timestamps=False)
        return raw.decode("utf-8", errors="replace")

    @_engine_errors
    def logs_since(self, vm_id: str, tail: int, since: str | None) -> LogChunk:
        self._inspect_raw(vm_id)
        # The engine's `since` is inclusive and to the microsecond at best: `after` drops
        # the lines at or before the marker that it repeats.
        raw: bytes = self._api.logs(
            container_name(vm_id),
            tail=tail,
            timestamps=True,
            since=log_times.epoch(since) if since else None,
        )
        return log_times.after(raw.decode("utf-8", errors="replace"), since)

    @_engine_errors
    def usage(self, vm_id: str) -> VMUsage:
        self._inspect_raw(vm_id)
        stats: dict[str, Any] = self._api.stats(container_name(vm_id), stream=False, one_shot=True)
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0)
        mem = stats.get("memory_stats", {})
        return VMUsage(
            cpu_seconds=cpu / 1e9,
            memory_bytes=int(mem.get("usage", 0)),
            memory_limit=int(mem.get("limit", 0)),
        )

    # -- engine --------------------------------------------------------------------------

    @_engine_errors
    def engine(self) -> EngineInfo:
        try:
            info: dict[str, Any] = self._client.info()
        except (APIError, DockerException) as exc:
            raise EngineError(f"Docker engine does not answer: {exc}", retryable=True) from exc
        return EngineInfo(
            version=str(info.get("ServerVersion", "")),
            storage_driver=str(info.get("Driver", "")),
            root_dir=str(info.get("DockerRootDir", "")),
            userns_remap=any("userns" in str(o) for o in info.get("SecurityOptions") or []),
            ncpu=int(info.get("NCPU", 0)),
            mem_total=int(info.get("MemTotal", 0)),
            cgroup_version=str(info.get("CgroupVersion") or "1"),
        )

    def isolate_networks(self, allow_smtp: bool) -> FirewallState:
        # The rules match the bridges this driver names (bridge_name: kmvm*).
        return ensure_isolation(allow_smtp)

    @_engine_errors
    def has_image(self, image: str) -> bool:
        try:
            self._api.inspect_image(image)
        except NotFound:
            return False
        return True

    @_engine_errors
    def supports_disk_limit(self, image: str) -> bool:
        """Probe by creating (never starting) a container with a size quota."""
        with self._probe_lock:
            if image in self._disk_probe:
                return self._disk_probe[image]
            try:
                cid = self._api.create_container(
                    image,
                    host_config=self._api.create_host_config(storage_opt={"size": "1G"}),
                    labels={"io.kumulus.probe": "1"},
                    entrypoint=["/bin/true"],
                )["Id"]
            except ImageNotFound:
                return False  # not cached: decided once the image exists
            except APIError:
                self._disk_probe[image] = False
                return False
            self._api.remove_container(cid, force=True)
            self._disk_probe[image] = True
            return True


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
