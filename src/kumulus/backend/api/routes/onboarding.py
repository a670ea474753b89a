"""Provider onboarding: the setup script, the agent package it installs, and what a
one-time provider token is for (so the script can check the mnemonic before using it)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kumulus import __version__
from kumulus.backend import providers, setup_script
from kumulus.backend.deps import Db, Settings
from kumulus.backend.package_source import package_sha256, package_tarball
from kumulus.backend.schemas import HostTokenInfo, HostTokenInfoIn
from kumulus.core.access import Public
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals

router = APIRouter(tags=["onboarding"], dependencies=[Public], route_class=AuthFirstRoute)


@router.get("/provider-setup.sh", response_class=Response)
def provider_setup_script(settings: Settings) -> Response:
    """Turns a fresh Ubuntu/Debian host into a provider host of this backend (the provider
    console gives the command that downloads it, checks its SHA-256 and runs it). 503
    `no_public_url` when the backend has no configured public URL."""
    return Response(
        setup_script.served_script(settings), media_type="text/x-shellscript; charset=utf-8"
    )


@router.get("/downloads/kumulus-agent.tar.gz.sha256", response_class=Response)
def agent_package_sha256() -> Response:
    """`<hex>  kumulus-agent.tar.gz`, the `sha256sum` line of the agent package."""
    line = f"{package_sha256()}  kumulus-agent.tar.gz\n"
    return Response(line, media_type="text/plain; charset=utf-8")


@router.get("/downloads/kumulus-agent.tar.gz", response_class=Response)
@router.head("/downloads/kumulus-agent.tar.gz", response_class=Response, include_in_schema=False)
def agent_package() -> Response:
    """The kumulus package (agent included) this backend runs, for `pip install`."""
    return Response(
        package_tarball(),
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="kumulus-{__version__}.tar.gz"',
            "X-Kumulus-Version": __version__,
        },
    )


@router.post("/v1/hosts/token-info", response_model=HostTokenInfo, responses=refusals(401))
def host_token_info(body: HostTokenInfoIn, db: Db) -> HostTokenInfo:
    """For the holder of an unused provider token: the wallet address the new host must
    sign with (the provider's linked wallet). Lets setup refuse a wrong mnemonic early."""
    return providers.host_token_info(db, body.provider_token)
