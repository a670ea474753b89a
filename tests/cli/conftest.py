"""One platform for the CLI tests of a worker: a backend and an agent on the fake runtime
over real HTTP (tests/fuzz_platform.py), and `kumulus` run as a process against it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import run_cli
from tests.fuzz_platform import Platform, platform


@dataclass
class Cli:
    """`kumulus` as one account: KUMULUS_BACKEND and KUMULUS_TOKEN, no config file."""

    home: Path
    backend: str
    token: str

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        extra = {"KUMULUS_BACKEND": self.backend, "KUMULUS_TOKEN": self.token, **env}
        return run_cli(self.home, *args, extra_env=extra)

    def json(self, *args: str) -> Any:
        out = self(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with pytest.MonkeyPatch.context() as mp, platform(tmp_path_factory.mktemp("cli"), mp) as p:
        yield p


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def developer(live: Platform, tmp_path: Path) -> Cli:
    return Cli(tmp_path, live.backend_url, _token(live.developer))


@pytest.fixture
def provider(live: Platform, tmp_path: Path) -> Cli:
    return Cli(tmp_path, live.backend_url, _token(live.provider))
