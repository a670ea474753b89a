"""Where the CLI's backend URL and token come from: KUMULUS_BACKEND and KUMULUS_TOKEN
(for CI) over ~/.config/kumulus/cli.json (written by `kumulus login`, 0600)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kumulus.cli.exits import Exit, fail, fail_api
from kumulus.client import ApiError, BackendClient
from kumulus.core.signing import write_secret_file

ENV_BACKEND = "KUMULUS_BACKEND"
ENV_TOKEN = "KUMULUS_TOKEN"  # noqa: S105 (the variable's name, not a token)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kumulus" / "cli.json"


def known_hosts_path() -> Path:
    return config_path().with_name("known_hosts")


@dataclass(frozen=True)
class Session:
    backend: str
    token: str


def _stored() -> dict[str, str]:
    try:
        cfg = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cfg, dict):
        return {}
    return {k: v for k, v in cfg.items() if isinstance(v, str)}


def current(as_json: bool = False) -> Session:
    """The session to use, the environment first; ends the command (exit 6) without one."""
    stored = _stored()
    backend = os.environ.get(ENV_BACKEND) or stored.get("backend")
    token = os.environ.get(ENV_TOKEN) or stored.get("token")
    if not backend or not token:
        fail(
            "not logged in: run `kumulus login --backend URL --email ...` "
            f"(or set {ENV_BACKEND} and {ENV_TOKEN})",
            Exit.NOT_ALLOWED,
            as_json=as_json,
            error_code="not_logged_in",
        )
    return Session(backend.rstrip("/"), token)


def backend_url(given: str | None, as_json: bool = False) -> str:
    """The backend for signup/login: --backend, else KUMULUS_BACKEND, else the stored one."""
    url = given or os.environ.get(ENV_BACKEND) or _stored().get("backend")
    if not url:
        fail(f"which backend? pass --backend URL (or set {ENV_BACKEND})", Exit.USAGE,
             as_json=as_json, error_code="usage")  # fmt: skip
    return url.rstrip("/")


@contextmanager
def api(as_json: bool = False, *, anonymous_to: str | None = None) -> Iterator[BackendClient]:
    """A client of the current session (or, with `anonymous_to`, of that backend without
    a token); an API error inside the block ends the command with its exit code."""
    if anonymous_to is not None:
        client = BackendClient(anonymous_to)
    else:
        s = current(as_json)
        client = BackendClient(s.backend, s.token)
    try:
        yield client
    except ApiError as exc:
        fail_api(exc, as_json=as_json)
    finally:
        client.close()


def save(backend: str, token: str) -> None:
    write_secret_file(config_path(), json.dumps({"backend": backend.rstrip("/"), "token": token}))


def forget() -> bool:
    """Remove the stored session; whether there was one."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
