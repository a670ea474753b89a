"""Schemathesis (all phases, stateful included) against both OpenAPI documents, as anonymous,
a developer, a provider (backend) and the agent's admin (agent): no server error, no answer
outside its declared schema, no undeclared status code, no ignored auth, `Allow` right.

The backend runs with an agent on the fake runtime behind it (tests/fuzz_platform.py).
Bounded and seeded for CI (KUMULUS_FUZZ_EXAMPLES, default 5 per operation and phase;
KUMULUS_FUZZ_SEED); KUMULUS_FUZZ_URL=<backend url> and KUMULUS_FUZZ_AGENT_URL with
KUMULUS_FUZZ_TOKEN_<ROLE> run the same checks longer against a real platform instead.

`positive_data_acceptance` is left out: a schema cannot say everything a field must be (an
SSH key's base64, a cursor we issued), so valid-looking data may be refused with 422."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz_platform import platform

pytestmark = pytest.mark.slow

ST = Path(sys.executable).with_name("st")
EXAMPLES = os.environ.get("KUMULUS_FUZZ_EXAMPLES", "5")
SEED = os.environ.get("KUMULUS_FUZZ_SEED", "20261130")


def _run(schema_url: str, headers: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    args = [str(ST if ST.exists() else shutil.which("st")), "run", schema_url]
    args += ["--phases", "examples,coverage,fuzzing,stateful"]
    args += ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]
    args += ["-n", EXAMPLES, "--seed", SEED, "--workers", "1", "--no-shrink"]
    args += ["--request-timeout", "30"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ
    )


def test_both_apis_hold_their_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("KUMULUS_FUZZ_URL"):
        backend_url = os.environ["KUMULUS_FUZZ_URL"]

        def bearer(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {os.environ[f'KUMULUS_FUZZ_TOKEN_{role}']}"}

        runs = {
            "anonymous": (backend_url, {}),
            "developer": (backend_url, bearer("DEVELOPER")),
            "provider": (backend_url, bearer("PROVIDER")),
        }
        if agent_url := os.environ.get("KUMULUS_FUZZ_AGENT_URL"):
            runs["agent admin"] = (agent_url, bearer("AGENT"))
        _fuzz(runs, tmp_path)
        return
    with platform(tmp_path / "platform", monkeypatch) as p:
        _fuzz(
            {
                "anonymous": (p.backend_url, {}),
                "developer": (p.backend_url, p.developer),
                "provider": (p.backend_url, p.provider),
                "agent admin": (p.agent_url, p.agent_admin),
            },
            tmp_path,
        )


def _fuzz(runs: dict[str, tuple[str, dict[str, str]]], tmp_path: Path) -> None:
    # In parallel: each run mostly waits on the other side's answers.
    procs = {
        who: _run(f"{url}/openapi.json", headers, tmp_path / who.replace(" ", "-"))
        for who, (url, headers) in runs.items()
    }
    failed = []
    for who, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            failed.append(f"=== as {who} (exit {proc.returncode})\n{out.decode(errors='replace')}")
    assert not failed, "\n".join(failed)
