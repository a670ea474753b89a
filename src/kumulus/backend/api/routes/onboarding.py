"""Provider onboarding: the setup script, the agent package it installs, and what a
one-time provider token is for (so the script can check the mnemonic before using it)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kumulus import __version__
from kumulus.backend import providers
from kumulus.backend.deps import Db, Settings
from kumulus.backend.package_source import package_tarball
from kumulus.backend.schemas import HostTokenInfo, HostTokenInfoIn

router = APIRouter(tags=["onboarding"])
_PLACEHOLDER = "__KUMULUS_BACKEND_URL__"


def public_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


@router.get("/provider-setup.sh", response_class=Response)
def provider_setup_script(request: Request, settings: Settings) -> Response:
    """`curl -sL <backend>/provider-setup.sh | sudo bash -s -- --token <token>`: turns a
    fresh Ubuntu/Debian host into a provider host of this backend."""
    script = (resources.files("kumulus.backend") / "provider-setup.sh").read_text()
    return Response(
        script.replace(_PLACEHOLDER, public_url(request, settings)),
        media_type="text/x-shellscript; charset=utf-8",
    )


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


@router.post("/v1/hosts/token-info", response_model=HostTokenInfo)
def host_token_info(body: HostTokenInfoIn, db: Db) -> HostTokenInfo:
    """For the holder of an unused provider token: the wallet address the new host must
    sign with (the provider's linked wallet). Lets setup refuse a wrong mnemonic early."""
    return providers.host_token_info(db, body.provider_token)
