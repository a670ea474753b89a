"""The backend's ASGI app (API only; consoles are mounted by kumulus.server later)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.middleware.trustedhost import TrustedHostMiddleware
from substrateinterface import Keypair

from kumulus import __version__
from kumulus.backend import backend_keys, metrics, settlement_state, vms
from kumulus.backend.api.routes import (
    agents,
    anchors,
    auth,
    billing,
    developer,
    onboarding,
    provider,
    wallets,
)
from kumulus.backend.api.routes import metrics as metrics_routes
from kumulus.backend.api.routes.agents import ENVELOPE_OVERHEAD, HEARTBEAT_PATH, verify_and_store
from kumulus.backend.converge import Converger
from kumulus.backend.db import Database, migrate
from kumulus.backend.heartbeat_intake import HeartbeatIntake
from kumulus.backend.heartbeats import HeartbeatWriter
from kumulus.backend.hot_wallet import DepositSide, deposit_side
from kumulus.backend.jobs import backend_jobs
from kumulus.backend.rate_limits import RateLimits
from kumulus.backend.security import configure_hashing
from kumulus.backend.security_headers import SecurityHeaders, trusted_hosts
from kumulus.chain.client import ChainClient
from kumulus.config import BackendSettings
from kumulus.core import telemetry
from kumulus.core.access import Public
from kumulus.core.auth_first import AuthFirstRoute, ungated_body_paths
from kumulus.core.body_limit import BodyLimit
from kumulus.core.errors import TooLargeError, UnavailableError
from kumulus.core.http import ERROR_RESPONSES, error_response, install_error_handlers
from kumulus.core.http_metrics import HttpMetrics, request_histogram
from kumulus.core.job_metrics import JobMetrics
from kumulus.core.openapi_statuses import install_declared_statuses
from kumulus.core.readiness import Check, ready
from kumulus.core.request_ids import RequestIdMiddleware

log = logging.getLogger(__name__)

# The API's routes, included as they are (their paths are the routers' own).
API_ROUTERS = (
    auth.router,
    provider.router,
    developer.router,
    agents.router,
    onboarding.router,
    billing.router,
    wallets.router,
    anchors.router,
    metrics_routes.router,
)
# Where kumulus.console mounts its pages (its routers' prefix): their forms' body limit.
CONSOLE_PREFIX = "/console/"


def backend_keypair(db: Database, settings: BackendSettings) -> Keypair:
    """The backend's own sr25519 key (agents pin its address): the same in every replica
    (backend_keys.py); made on the first start of a new database."""
    return backend_keys.key(db, backend_keys.BACKEND, settings.key_path)


def settlement(
    db: Database, settings: BackendSettings
) -> tuple[ChainClient | None, Keypair | None, Keypair | None, DepositSide | None]:
    """The chain, the platform's payout key, its anchor key and where deposits land; all
    None when settlement is off. The keys are checked against the database's."""
    if not settings.chain_url:
        log.warning(
            "on-chain settlement is OFF (no KUMULUS_BACKEND_CHAIN_URL): metering and the "
            "ledger work; deposits and payouts are refused until a chain is configured"
        )
        return None, None, None, None
    assert settings.payout_key_file is not None and settings.anchor_key_file is not None
    key = backend_keys.key(db, backend_keys.PAYOUT, settings.payout_key_file)
    anchor_key = backend_keys.key(db, backend_keys.ANCHOR, settings.anchor_key_file)
    deposit = deposit_side(db, settings)
    _distinct_senders({"payout": key.ss58_address, "anchor": anchor_key.ss58_address,
                       "deposit": deposit.address})  # fmt: skip
    chain = ChainClient(settings.chain_url, settings.ss58_format)
    log.info(
        "on-chain settlement ON: %s; deposit address %s (%s), payout address %s (float %s, "
        "daily cap %s %s)", settings.chain_url, deposit.address,
        "key on this backend" if deposit.key else "cold: key not on this backend",
        key.ss58_address, settings.payout_float, settings.payout_daily_cap,
        settings.token_symbol,
    )  # fmt: skip
    return chain, key, anchor_key, deposit


def _distinct_senders(addresses: dict[str, str]) -> None:
    """The keys that send on chain must be three: the payout key's nonces are the payouts'
    alone (a nonce the database did not give stops payouts as after a restore), the anchor
    key's the anchors', and the deposit key's the float top-ups'."""
    seen: dict[str, str] = {}
    for role, address in addresses.items():
        if address in seen:
            raise backend_keys.KeysMismatchError(
                f"the {seen[address]} and {role} keys are the same ({address}): each needs "
                f"its own key ({backend_keys.SETTING[seen[address]]}, "
                f"{backend_keys.SETTING[role]})"
            )
        seen[address] = role


def create_app(settings: BackendSettings) -> FastAPI:
    db = Database(settings.db_url, settings.db_pool_size, settings.db_max_overflow)
    migrate(db.engine)
    keypair = backend_keypair(db, settings)
    heartbeats = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)
    rate_limits = RateLimits(settings, db)
    # Heartbeats are verified on threads of their own, apart from the pool every other sync
    # route shares: slow requests elsewhere never make a host's heartbeats wait (and the
    # host look offline). One queue put per heartbeat: anyio's thread trip cost the event
    # loop ~3 times the verification itself, an executor's Future a sixth of the handler
    # (bench/heartbeats).
    heartbeat_intake = HeartbeatIntake(
        partial(verify_and_store, settings=settings, limits=rate_limits, writer=heartbeats),
        settings.heartbeat_threads,
    )
    placements = vms.placer(db, settings)
    chain, payout_key, anchor_key, deposit = settlement(db, settings)
    jobs = backend_jobs(db, settings, keypair, chain, payout_key, anchor_key, deposit=deposit)
    registry = metrics.registry(db)  # this app's own (tests build many apps)
    job_metrics = JobMetrics(registry)
    job_metrics.attach(jobs.runner)
    jobs.runner.observer = job_metrics.observe
    events = metrics.BackendEvents(registry)

    converger = Converger(db, settings, keypair, placer=placements, events=events)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        try:
            yield
        finally:
            converger.close()
            jobs.stop()  # releases the payout sender lease once the payouts job is done
            heartbeat_intake.close()
            heartbeats.close()
            placements.close()
            db.engine.dispose()  # its pooled connections go back to the server now

    app = FastAPI(
        telemetry=telemetry.OFF,
        title="Kumulus backend",
        version=__version__,
        description="Providers, their hosts, developers and their VMs.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.router.route_class = AuthFirstRoute  # callers known before bodies are parsed
    app.state.settings = settings
    app.state.db = db
    app.state.keypair = keypair
    app.state.heartbeats = heartbeats
    app.state.heartbeat_intake = heartbeat_intake
    app.state.placer = placements
    app.state.chain = chain
    app.state.payout_key = payout_key
    app.state.anchor_key = anchor_key
    app.state.deposit_address = deposit.address if deposit else None
    app.state.jobs = jobs.runner
    app.state.converger = converger
    app.state.backend_jobs = jobs
    app.state.metrics = registry
    app.state.metrics_token_file = settings.metrics_token_file
    app.state.events = events
    app.state.rate_limits = rate_limits
    configure_hashing(settings.password_hash_concurrency, settings.password_hash_wait)
    install_error_handlers(app)

    @app.exception_handler(PoolTimeout)
    async def _database_busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every connection of this process's pool is in use: a load peak, not a bug; the
        # same request succeeds later (here or on another replica).
        log.warning("database pool exhausted: answered 503 busy (%s)", type(exc).__name__)
        return error_response(
            UnavailableError("the database is busy; retry shortly", code="busy", retry_after=1)
        )

    # Requests naming another Host are refused (400) before any route: links and scripts
    # are built from the public URL only, and a foreign Host is DNS rebinding or poisoning.
    if (hosts := trusted_hosts(settings.public_url, settings.allowed_hosts)) is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)

    # Bodies are bounded before routing, authentication or parsing (consoles included:
    # they are mounted on this app under CONSOLE_PREFIX). Bodies of routes without a gate
    # and console forms are parsed on the event loop before any check can refuse their
    # sender: small limits.
    def body_refused(path: str) -> None:
        # A heartbeat too large to read is a refused heartbeat like one refused inside.
        if path == HEARTBEAT_PATH and (events := getattr(app.state, "events", None)):
            events.heartbeat(refused=TooLargeError.code)

    app.add_middleware(
        BodyLimit,
        default=settings.max_body_bytes,
        per_path={
            HEARTBEAT_PATH: settings.heartbeat_max_bytes + ENVELOPE_OVERHEAD,
            **dict.fromkeys(
                ungated_body_paths(r for router in API_ROUTERS for r in router.routes),
                settings.anonymous_max_body_bytes,
            ),
        },
        per_prefix={CONSOLE_PREFIX: settings.console_max_body_bytes},
        on_refused=body_refused,
    )
    app.add_middleware(SecurityHeaders)  # outside the checks: even a 400 or 413 carries them
    # Outermost: every answer is timed and carries a request id, refusals included.
    app.add_middleware(HttpMetrics, histogram=request_histogram(registry))
    app.add_middleware(RequestIdMiddleware)
    install_declared_statuses(app)

    def database() -> None:
        with db.session() as s:
            s.execute(text("SELECT 1"))

    checks = [Check("database", database)]
    if chain is not None:
        checks.append(Check("chain", lambda: chain.finalized_number()))

    @app.get("/readyz", tags=["meta"], dependencies=[Public])
    def readyz() -> Mapping[str, object]:
        """Ready to serve: the database answers and, with settlement on, the chain does
        (503 `not_ready` naming each failed check). Liveness is /healthz."""
        return ready(checks)

    @app.get("/healthz", tags=["meta"], dependencies=[Public])
    def healthz() -> dict[str, Any]:
        blocked: list[str] = []
        if chain is not None:  # codes only: the reasons are for operators (the log, CLI)
            with db.session() as s:
                blocked = settlement_state.public_codes(s)
        return {
            "ok": True,
            "version": __version__,
            "backendAddress": keypair.ss58_address,
            "anchorAddress": anchor_key.ss58_address if anchor_key else None,
            "settlement": "on" if chain else "off",
            "depositAddress": deposit.address if deposit else None,
            "payoutAddress": payout_key.ss58_address if payout_key else None,
            "settlementBlocked": blocked,
        }

    for router in API_ROUTERS:
        app.include_router(router)
    log.info(
        "backend %s on %s; signing address %s",
        __version__,
        db.engine.url.render_as_string(hide_password=True),
        keypair.ss58_address,
    )
    return app
