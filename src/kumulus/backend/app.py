"""The backend's ASGI app (API only; consoles are mounted by kumulus.server later)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from substrateinterface import Keypair

from kumulus import __version__
from kumulus.backend.api.routes import agents, auth, developer, onboarding, provider
from kumulus.backend.db import Database, migrate
from kumulus.backend.heartbeats import HeartbeatWriter
from kumulus.backend.maintenance import Maintenance
from kumulus.config import BackendSettings
from kumulus.core.http import install_validation_handler
from kumulus.core.signing import load_keypair, new_mnemonic, write_secret_file

log = logging.getLogger(__name__)


def backend_keypair(settings: BackendSettings) -> Keypair:
    """The backend's own sr25519 key (agents pin its address); made on first start."""
    if not settings.key_path.exists():
        write_secret_file(settings.key_path, new_mnemonic())
        log.info("created the backend signing key %s (mode 0600)", settings.key_path)
    return load_keypair(settings.key_path)


def create_app(settings: BackendSettings) -> FastAPI:
    db = Database(settings.db_url)
    migrate(db.engine)
    keypair = backend_keypair(settings)
    heartbeats = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)
    maintenance = Maintenance(db, settings, keypair)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        maintenance.start()
        try:
            yield
        finally:
            maintenance.stop()
            heartbeats.close()

    app = FastAPI(
        title="Kumulus backend",
        version=__version__,
        description="Providers, their hosts, developers and their VMs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.keypair = keypair
    app.state.heartbeats = heartbeats
    app.state.maintenance = maintenance
    install_validation_handler(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "backendAddress": keypair.ss58_address}

    app.include_router(auth.router)
    app.include_router(provider.router)
    app.include_router(developer.router)
    app.include_router(agents.router)
    app.include_router(onboarding.router)
    log.info(
        "backend %s on %s; signing address %s",
        __version__,
        db.engine.url.render_as_string(hide_password=True),
        keypair.ss58_address,
    )
    return app
