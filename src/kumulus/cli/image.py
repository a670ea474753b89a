"""`kumulus image build`: the VM base image on this host."""

from __future__ import annotations

from typing import Annotated

import typer

from kumulus.cli.exits import failure
from kumulus.config import AgentSettings

app = typer.Typer(help="The VM base image.", no_args_is_help=True)


@app.command("build")
def image_build(
    offline: Annotated[bool, typer.Option(help="skip the registry; debootstrap")] = False,
    online: Annotated[bool, typer.Option(help="only FROM ubuntu:24.04")] = False,
    force: Annotated[bool, typer.Option(help="rebuild even if this version exists")] = False,
    mirror: Annotated[str, typer.Option(help="Debian mirror for offline builds")] = (
        "http://deb.debian.org/debian"
    ),
) -> None:
    """Build the VM base image once (reused while its version matches)."""
    import docker
    from docker.errors import DockerException

    from kumulus.agent.images import ImageBuildError, ensure_image

    if offline and online:
        raise failure("choose --offline or --online, not both", 2)
    settings = AgentSettings()
    try:
        client = (
            docker.DockerClient(base_url=settings.docker_host)
            if settings.docker_host
            else docker.from_env()
        )
        how = ensure_image(
            client,
            settings.image,
            lambda line: typer.echo(f"[image] {line}"),
            mode="offline" if offline else "online" if online else "auto",
            mirror=mirror,
            force=force,
        )
    except (ImageBuildError, DockerException) as exc:
        raise failure(f"image build failed: {exc}") from exc
    typer.echo(f"{settings.image} ready ({how})")
