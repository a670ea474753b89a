"""Run the real `kumulus` CLI in a subprocess, with its config under `home`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    home: Path,
    *args: str,
    stdin: str = "",
    path: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`kumulus ARGS` with XDG_CONFIG_HOME=home (and PATH=path, `extra_env` when given)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), **(extra_env or {})}
    for name in ("KUMULUS_BACKEND", "KUMULUS_TOKEN"):  # only what a test sets itself
        if name not in (extra_env or {}):
            env.pop(name, None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "kumulus.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
