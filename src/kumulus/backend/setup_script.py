"""What a provider runs to turn a machine into a host: the setup script as this backend
serves it, and the console's one-line command that fetches, checks and runs it.

The script is only ever built from the configured public URL (`KUMULUS_BACKEND_PUBLIC_URL`;
`kumulus up` sets its own), never from a request's Host header, which anyone can set. It
carries the SHA-256 of the agent package it installs and checks it before installing; the
one-liner carries the SHA-256 of the script and checks it before running it; and the script
refuses a plain-http backend unless told `--insecure-http` (a network attacker on that path
could hand out any package and any backend key)."""

from __future__ import annotations

import hashlib
import shlex
from functools import lru_cache
from importlib import resources

from kumulus.backend.package_source import package_sha256
from kumulus.config import BackendSettings
from kumulus.core.errors import UnavailableError

URL_PLACEHOLDER = "__KUMULUS_BACKEND_URL__"
SHA_PLACEHOLDER = "__KUMULUS_AGENT_SHA256__"
SCRIPT_FILE = "kumulus-setup.sh"


def public_url(settings: BackendSettings) -> str:
    """The URL hosts and browsers reach this backend at; UnavailableError `no_public_url`
    when the operator has not configured one."""
    if not settings.public_url:
        raise UnavailableError(
            "this backend has no public URL configured (KUMULUS_BACKEND_PUBLIC_URL), so it "
            "cannot hand out a setup command: ask its operator",
            code="no_public_url",
            retry=False,
        )
    return settings.public_url.rstrip("/")


@lru_cache(maxsize=8)
def _script(url: str) -> str:
    template = (resources.files("kumulus.backend") / "provider-setup.sh").read_text()
    return template.replace(URL_PLACEHOLDER, url).replace(SHA_PLACEHOLDER, package_sha256())


def served_script(settings: BackendSettings) -> str:
    """provider-setup.sh with this backend's public URL and agent package SHA-256."""
    return _script(public_url(settings))


def script_sha256(settings: BackendSettings) -> str:
    return hashlib.sha256(served_script(settings).encode()).hexdigest()


def setup_command(settings: BackendSettings, token: str) -> str:
    """The one-liner for a new host: download the script, check its SHA-256, run it with
    the one-time token (and `--insecure-http` for a plain-http backend such as
    `kumulus up`'s)."""
    url = public_url(settings)
    # `HASH *FILE` (binary mode), not `HASH  FILE`: a page shows two spaces as one, and
    # older sha256sum versions want exactly two.
    insecure = " --insecure-http" if url.startswith("http://") else ""
    return (
        f"curl -fsSL -o {SCRIPT_FILE} {shlex.quote(url + '/provider-setup.sh')} && "
        f"echo '{script_sha256(settings)} *{SCRIPT_FILE}' | sha256sum -c - && "
        f"sudo bash {SCRIPT_FILE} --token {shlex.quote(token)}{insecure}"
    )
