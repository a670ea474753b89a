"""Health stats, signed with the provider's sr25519 wallet key and sent to the backend.

Without a backend URL the collector still runs and logs a one-line summary, so a provider
can see what would be sent. The mnemonic stays inside the Keypair object: it is never
logged, passed to a child process or written anywhere.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from substrateinterface import Keypair

from kumulus import __version__
from kumulus.agent.errors import AgentError
from kumulus.agent.registration import load_registration
from kumulus.agent.runtime import EngineError
from kumulus.agent.service import VMService
from kumulus.core.jobs import Job, JobRunner
from kumulus.core.signing import DEFAULT_MAX_SKEW, Domain, SignedEnvelope, sign_envelope

log = logging.getLogger(__name__)

HEARTBEAT_PATH = "/v1/hosts/heartbeat"


class StatsCollector:
    def __init__(
        self,
        service: VMService,
        keypair: Keypair,
        *,
        backend_url: str | None,
        interval: float,
        http: httpx.Client | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.service = service
        self.keypair = keypair
        self._configured_url = backend_url.rstrip("/") if backend_url else None
        self.state_dir = state_dir
        self.interval = interval
        self._http = http or httpx.Client(timeout=10.0)
        self._cpu_seen: dict[str, tuple[float, float]] = {}
        self.last: SignedEnvelope | None = None
        # Names this run of the agent in its heartbeats: the backend tries the host's VMs'
        # pending intents again at once when it changes (a restarted agent), instead of
        # after the backoff its failed calls built up meanwhile.
        self.run_id = secrets.token_hex(8)
        self._runner: JobRunner | None = None
        psutil.cpu_percent(interval=None)  # prime: the first call has no baseline

    def _target(self) -> tuple[str | None, str | None]:
        """(backend URL, host id): configuration wins, else this agent's registration."""
        reg = load_registration(self.state_dir) if self.state_dir else None
        url = self._configured_url or (reg.backend_url if reg else None)
        return url, (reg.host_id if reg else None)

    @property
    def backend_url(self) -> str | None:
        return self._target()[0]

    @property
    def address(self) -> str:
        return str(self.keypair.ss58_address)

    def collect(self) -> dict[str, Any]:
        """One snapshot of the host and its VMs (plain JSON types only)."""
        vm_mem = psutil.virtual_memory()
        root = self.service.engine_info.root_dir or "/"
        try:
            disk = psutil.disk_usage(root)
        except OSError:
            disk = psutil.disk_usage("/")
        load1, load5, load15 = psutil.getloadavg()
        docker_up = True
        vm_stats: list[dict[str, Any]] = []
        running = unhealthy = total = 0
        try:
            vms = self.service.runtime.list()
        except EngineError:
            docker_up, vms = False, []
        now = time.monotonic()
        for vm in vms:
            total += 1
            item: dict[str, Any] = {"vmId": vm.spec.vm_id, "state": vm.state}
            used = self.service.disk_limits.used(vm.container_id)
            if used is not None:
                item["diskUsedBytes"] = used
            if vm.state == "running":
                running += 1
                try:
                    usage = self.service.runtime.usage(vm.spec.vm_id)
                except EngineError:
                    usage = None
                if usage is not None:
                    prev = self._cpu_seen.get(vm.spec.vm_id)
                    self._cpu_seen[vm.spec.vm_id] = (now, usage.cpu_seconds)
                    cpu_pct = None
                    if prev and now > prev[0]:
                        cpu_pct = round(100 * (usage.cpu_seconds - prev[1]) / (now - prev[0]), 2)
                    item.update(
                        cpuPercent=cpu_pct,
                        memoryBytes=usage.memory_bytes,
                        memoryLimit=usage.memory_limit,
                    )
            elif vm.state in ("restarting", "dead"):
                unhealthy += 1
            vm_stats.append(item)
        capacity = self.service.capacity
        lxcfs = self.service.lxcfs.probe()
        return {
            "kind": "health",
            "agentVersion": __version__,
            "agentRun": self.run_id,
            "host": {
                "cpuCount": psutil.cpu_count() or 0,
                "cpuPercent": psutil.cpu_percent(interval=None),
                "memoryTotal": vm_mem.total,
                "memoryUsed": vm_mem.total - vm_mem.available,
                "memoryPercent": vm_mem.percent,
                "diskTotal": disk.total,
                "diskUsed": disk.used,
                "diskPercent": disk.percent,
                "load": [round(load1, 2), round(load5, 2), round(load15, 2)],
                "uptime": round(time.time() - psutil.boot_time()),
            },
            "capacity": {"cpu": capacity.cpu, "memory": capacity.memory, "disk": capacity.disk},
            "docker": {"up": docker_up, "version": self.service.engine_info.version},
            "lxcfs": {"active": lxcfs.active, "detail": lxcfs.detail},
            # Signed with the rest: the backend places VMs only on fully isolated hosts.
            "isolation": self.service.isolation().report().model_dump(by_alias=True),
            "vms": {"total": total, "running": running, "unhealthy": unhealthy},
            "vmStats": vm_stats,
        }

    def send_once(self) -> SignedEnvelope:
        backend_url, host_id = self._target()
        payload = self.collect()
        if host_id:
            payload["hostId"] = host_id
        # The backend stores a heartbeat only when it is signed later than the host's last
        # one (its replay protection): times strictly increase, even if the clock steps
        # back (they stay ahead until it catches up). Only from a time the backend may have
        # stored, within its allowed skew of the clock: a heartbeat signed by a clock that
        # was further ahead was refused, and following it would keep every later one
        # refused until real time caught up (attack19).
        signed_at = time.time()
        if self.last is not None and self.last.timestamp - signed_at <= DEFAULT_MAX_SKEW:
            signed_at = max(signed_at, self.last.timestamp + 0.001)
        envelope = sign_envelope(self.keypair, payload, domain=Domain.HEARTBEAT, now=signed_at)
        self.last = envelope
        p = envelope.payload
        if backend_url is None:
            log.info(
                "health stats (signed by %s, no backend configured, kept local): cpu %.0f%%, "
                "memory %.0f%%, disk %.0f%%, %d/%d VMs running",
                envelope.address,
                p["host"]["cpuPercent"],
                p["host"]["memoryPercent"],
                p["host"]["diskPercent"],
                p["vms"]["running"],
                p["vms"]["total"],
            )
            return envelope
        url = backend_url + HEARTBEAT_PATH
        try:
            resp = self._http.post(url, json=envelope.model_dump())
            if resp.status_code >= 400:
                log.warning(
                    "backend refused health stats: HTTP %s %s", resp.status_code, resp.text[:200]
                )
        except httpx.HTTPError as exc:
            log.warning("could not send health stats to %s: %s", url, type(exc).__name__)
        return envelope

    def job(self) -> Job:
        """The collector's loop as a job: a round right away, then every `interval` s. An
        engine or network problem fails that round only (logged in one line)."""
        return Job(
            "stats",
            self.interval,
            max(30.0, 3 * self.interval),
            self.send_once,
            expected=(AgentError, EngineError, OSError),
            run_at_start=True,
        )

    def start(self) -> None:
        """Run the loop on a runner of its own (the agent app puts `job()` on its runner)."""
        self._runner = JobRunner([self.job()])
        self._runner.start()

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(timeout=5)
