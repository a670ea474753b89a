"""The agent's ASGI app: composition of settings, runtime, service, auth and stats."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from substrateinterface import Keypair

from kumulus import __version__
from kumulus.agent.auth import AuthConfig, Caller, ensure_admin_token, ensure_agent_id
from kumulus.agent.disk_limits import DiskLimits
from kumulus.agent.errors import AgentError
from kumulus.agent.firewall import FirewallState
from kumulus.agent.host_key import signing_key
from kumulus.agent.lxcfs import StaleMountRepair
from kumulus.agent.metrics import AgentMetrics, CountingRuntime, StateCollector
from kumulus.agent.routes import legacy, vms
from kumulus.agent.runtime import EngineError, VMRuntime
from kumulus.agent.service import VMService
from kumulus.agent.signed_answers import SignedAnswers
from kumulus.agent.stats import StatsCollector
from kumulus.config import AgentSettings
from kumulus.core import telemetry
from kumulus.core.access import Public
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.body_limit import BodyLimit
from kumulus.core.http import ERROR_RESPONSES, install_error_handlers
from kumulus.core.http_metrics import HttpMetrics, request_histogram
from kumulus.core.job_metrics import JobMetrics
from kumulus.core.jobs import Job, JobRunner
from kumulus.core.metrics_route import metrics_router
from kumulus.core.openapi_statuses import install_declared_statuses
from kumulus.core.readiness import Check, ready
from kumulus.core.request_ids import RequestIdMiddleware
from kumulus.core.signing import NonceCache, SignedEnvelope

log = logging.getLogger(__name__)


def install_firewall(runtime: VMRuntime, settings: AgentSettings) -> FirewallState:
    if not settings.firewall:
        return FirewallState(False, "the firewall is off (KUMULUS_AGENT_FIREWALL=false)")
    return runtime.isolate_networks(settings.allow_smtp)


def _guard(service: VMService, limits: DiskLimits, settings: AgentSettings) -> None:
    """Put back isolation rules someone flushed and re-read the engine (keeping /v1/host,
    the heartbeats and the create guard truthful), disk limits an engine restart
    dropped, and VMs the engine made after their create had failed."""
    before = service.isolation().report()
    service.firewall = install_firewall(service.runtime, settings)
    try:
        service.refresh_engine()
    except AgentError as exc:
        log.warning("engine facts not re-read: %s", exc.detail)
    after = service.isolation().report()
    if after.level != before.level or after.missing != before.missing:
        log.warning("VM isolation is now %s: %s", after.level, after.detail)
    try:
        limits.reapply(service.runtime.list())
    except EngineError as exc:
        log.warning("disk limits not re-checked: %s", exc)
    try:
        service.sweep_unstarted()
    except EngineError as exc:
        log.warning("unstarted VMs not looked for: %s", exc)


def agent_jobs(
    service: VMService,
    limits: DiskLimits,
    settings: AgentSettings,
    collector: StatsCollector | None,
) -> JobRunner:
    """The agent's background jobs: the guard, lxcfs (restart VMs whose lxcfs files an lxcfs
    restart broke), leftovers (remove failed creates' VMs the engine kept), and the stats
    collector when there is a wallet to sign with (no leases: they concern this host
    only)."""
    interval = settings.guard_interval
    jobs = [
        Job("guard", interval, max(60.0, interval), partial(_guard, service, limits, settings)),
        Job(
            "lxcfs",
            settings.lxcfs_interval,
            max(60.0, settings.lxcfs_interval),
            StaleMountRepair(service.runtime, service.lxcfs).run,
            expected=(EngineError,),
        ),
        # Cheap when there is nothing to remove (no engine call): often, so that a failed
        # create's container is gone soon after the engine is back.
        Job("leftovers", settings.leftovers_interval, 120.0, service.remove_leftovers),
    ]
    if collector is not None:
        jobs.append(collector.job())
    return JobRunner(jobs)


def create_app(
    settings: AgentSettings,
    runtime: VMRuntime | None = None,
    *,
    keypair: Keypair | None = None,
    collect_stats: bool = True,
) -> FastAPI:
    agent_id = ensure_agent_id(settings.state_dir)
    if runtime is None:
        from kumulus.agent.runtime.docker_driver import DockerRuntime

        runtime = DockerRuntime(agent_id, settings.docker_host)
    if keypair is None:
        keypair = signing_key(settings)
    registry = CollectorRegistry(auto_describe=True)  # this app's own (tests build many)
    metrics = AgentMetrics(registry)
    job_metrics = JobMetrics(registry)
    runtime = CountingRuntime.wrap(runtime, metrics)
    service = VMService(
        runtime,
        settings,
        firewall=install_firewall(runtime, settings),
        wallet_address=str(keypair.ss58_address) if keypair else None,
        on_created=metrics.created,
    )
    registry.register(StateCollector(lambda: service))
    limits = service.disk_limits
    collector = (
        StatsCollector(
            service,
            keypair,
            backend_url=settings.backend_url,
            interval=settings.stats_interval,
            state_dir=settings.state_dir,
        )
        if keypair is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for note in runtime.recover():
            log.warning("recovered after a crash: removed %s", note)
        service.remove_leftovers()  # failed creates' VMs a previous run could not remove
        lxcfs = service.lxcfs.probe()
        isolation = service.isolation()
        log.log(
            logging.INFO if lxcfs.active and isolation.full else logging.WARNING,
            "agent %s: %d VMs on this host; isolation %s (%s); VM sizes %s (%s)",
            __version__,
            len(runtime.list()),
            "FULL" if isolation.full else "WEAK",
            isolation.report().detail,
            "VISIBLE" if lxcfs.active else "NOT VISIBLE",
            lxcfs.detail,
        )
        if not isolation.full:
            log.warning(
                "creates are %s: missing %s",
                "accepted anyway (KUMULUS_AGENT_ALLOW_WEAK_ISOLATION)"
                if settings.allow_weak_isolation
                else "REFUSED",
                isolation.problem(),
            )
        applied = limits.reapply(runtime.list())
        if applied:
            log.info("disk limits in force for %d VMs", applied)
        jobs = agent_jobs(service, limits, settings, collector if collect_stats else None)
        jobs.observer = job_metrics.observe
        job_metrics.attach(jobs)
        app.state.jobs = jobs
        jobs.start()
        yield
        jobs.stop(timeout=5)

    app = FastAPI(
        telemetry=telemetry.OFF,
        title="kumulus-agent",
        version=__version__,
        description="Creates, starts, stops and deletes hardened VM containers on this host.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.router.route_class = AuthFirstRoute  # callers known before bodies are parsed
    app.state.service = service
    app.state.collector = collector
    app.state.metrics = registry
    app.state.metrics_token_file = settings.metrics_token_file
    app.state.auth = AuthConfig(
        admin_token=ensure_admin_token(settings.token_path),
        backend_key_file=settings.backend_key_path,
        state_dir=settings.state_dir,
        agent_id=agent_id,
        nonces=NonceCache(ttl=2 * settings.signature_max_skew + 5),
        max_skew=settings.signature_max_skew,
        started_at=time.time(),
    )

    install_error_handlers(app)
    install_declared_statuses(app)
    # Answers to the backend are signed by the key heartbeats are signed with (the host
    # key), which the backend knows for this host.
    app.add_middleware(SignedAnswers, signer=lambda: keypair)
    # Bodies are bounded before routing, authentication or parsing.
    app.add_middleware(BodyLimit, default=settings.max_body_bytes)
    # Outside the signing: the request id header is not part of what is signed (the body
    # and status are), and every answer is timed, refusals included.
    app.add_middleware(HttpMetrics, histogram=request_histogram(registry))
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["host"], dependencies=[Public])
    def healthz() -> dict[str, Any]:
        """Liveness only; tells nothing about VMs (no authentication)."""
        return {"ok": True, "version": __version__}

    @app.get("/v1/stats/latest", response_model=SignedEnvelope | None, tags=["host"])
    def latest_stats(_: Caller) -> SignedEnvelope | None:
        """The last signed health envelope this agent produced."""
        return collector.last if collector else None

    @app.get("/readyz", tags=["host"], dependencies=[Public])
    def readyz() -> Mapping[str, object]:
        """Ready to create VMs' containers: the engine answers (503 `not_ready` naming the
        failed check otherwise). Liveness is /healthz."""
        return ready([Check("engine", runtime.engine)])

    app.include_router(vms.router)
    app.include_router(legacy.router)
    app.include_router(metrics_router("host"))
    return app
