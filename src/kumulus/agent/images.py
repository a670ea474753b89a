"""The VM base image: built once per image version, online (FROM ubuntu:24.04) or offline
(debootstrap from a Debian mirror + `docker import`). Both paths install the same files from
`image/`: the fixed entrypoint and the sshd hardening."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound

from kumulus import __version__

IMAGE_VERSION_LABEL = "io.kumulus.image.version"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = "openssh-server,sudo,ca-certificates"
# Debian's archive keys (package debian-archive-keyring): debootstrap checks the Release
# file's signature against them, and every package against the Release file's hashes.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    pass


def image_files() -> Path:
    return Path(str(resources.files("kumulus.agent") / "image"))


def build_version() -> str:
    """Kumulus version + a digest of the files baked into the image: changing the entrypoint
    or sshd config rebuilds the image even within one release."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "kumulus-init", "sshd-kumulus.conf"):
        digest.update((image_files() / name).read_bytes())
    return f"{__version__}-{digest.hexdigest()[:12]}"


def image_version(client: docker.DockerClient, tag: str) -> str | None:
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    labels = image.labels or {}
    return labels.get(IMAGE_VERSION_LABEL)


def ensure_image(
    client: docker.DockerClient,
    tag: str,
    progress: Progress,
    *,
    mode: str = "auto",
    mirror: str = DEBIAN_MIRROR,
    force: bool = False,
) -> str:
    """Build `tag` unless an image of this Kumulus version exists. Return how it was made.

    mode: "auto" tries the registry (ubuntu:24.04) and falls back to debootstrap;
    "online" or "offline" force one path.
    """
    if not force and image_version(client, tag) == build_version():
        progress(f"image {tag} (build {build_version()}) already built; reusing it")
        return "cached"
    if mode in ("auto", "online"):
        try:
            _build_online(client, tag, progress)
            return "online"
        except ImageBuildError as exc:
            if mode == "online":
                raise
            progress(f"registry not usable ({exc}); building offline from {mirror}")
    _build_offline(client, tag, progress, mirror)
    return "offline"


def _build_online(client: docker.DockerClient, tag: str, progress: Progress) -> None:
    progress("pulling ubuntu:24.04")
    try:
        client.images.pull("ubuntu", tag="24.04")
    except (APIError, DockerException) as exc:
        raise ImageBuildError(str(getattr(exc, "explanation", exc))[:200]) from exc
    progress("building from Dockerfile (ubuntu:24.04 + openssh-server + sudo)")
    try:
        for chunk in client.api.build(
            path=str(image_files()),
            tag=tag,
            buildargs={"KUMULUS_IMAGE_VERSION": build_version()},
            rm=True,
            decode=True,
        ):
            if "stream" in chunk and chunk["stream"].strip():
                progress(chunk["stream"].rstrip())
            if "error" in chunk:
                raise ImageBuildError(chunk["error"])
    except (APIError, DockerException) as exc:
        raise ImageBuildError(str(exc)) from exc


def debootstrap_command(
    debootstrap: str, rootfs: Path, mirror: str, keyring: Path = DEBIAN_KEYRING
) -> list[str]:
    """The offline build's debootstrap argv: signatures checked against Debian's archive
    keyring, and no fallback that would skip the check (ImageBuildError without a keyring:
    an image built from unverified packages runs every developer's VM)."""
    if not keyring.is_file():
        raise ImageBuildError(
            f"Debian's archive keyring {keyring} is missing: apt-get install "
            "debian-archive-keyring (the offline build refuses unsigned packages)"
        )
    return [
        debootstrap,
        "--variant=minbase",
        f"--keyring={keyring}",
        "--force-check-gpg",
        f"--include={PACKAGES}",
        DEBIAN_SUITE,
        str(rootfs),
        mirror,
    ]


def _build_offline(client: docker.DockerClient, tag: str, progress: Progress, mirror: str) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="kumulus-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = debootstrap_command(debootstrap, rootfs, mirror)
        progress(
            f"debootstrap {DEBIAN_SUITE} (minbase + {PACKAGES}, signatures checked); about a minute"
        )
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            progress("  " + line.rstrip())
        if proc.wait() != 0:
            raise ImageBuildError(f"debootstrap failed with exit code {proc.returncode}")
        _install_files(rootfs)
        progress("packing the root filesystem")
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True,
        )
        progress(f"importing into Docker as {tag}")
        try:
            client.api.import_image_from_file(
                str(tarball),
                repository=tag.rsplit(":", 1)[0],
                tag=tag.rsplit(":", 1)[1] if ":" in tag else "latest",
                changes=[
                    f"LABEL {IMAGE_VERSION_LABEL}={build_version()}",
                    "EXPOSE 22",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    'ENTRYPOINT ["/usr/local/sbin/kumulus-init"]',
                ],
            )
        except (APIError, DockerException) as exc:
            raise ImageBuildError(f"docker import failed: {exc}") from exc
    progress(f"image {tag} ready")


def _install_files(rootfs: Path) -> None:
    files = image_files()
    init = rootfs / "usr/local/sbin/kumulus-init"
    shutil.copyfile(files / "kumulus-init", init)
    init.chmod(0o755)
    conf = rootfs / "etc/ssh/sshd_config.d/00-kumulus.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files / "sshd-kumulus.conf", conf)
    conf.chmod(0o644)
    # Host keys are per VM (made at first boot), never shared through the image.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    # debootstrap copies the build host's resolver/hostname; Docker provides its own.
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)
