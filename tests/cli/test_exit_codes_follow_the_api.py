"""Exit codes are the API's answer mapped in one place (cli/exits.py): 3 not found, 4 no
capacity, 5 payment required, 6 not logged in or a refused token, 8 unreachable, 2 usage;
with --json the error is the API's error body on stderr."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.cli.conftest import Cli
from tests.cli_runner import run_cli
from tests.fuzz_platform import Platform


def test_not_found_prints_the_api_error_body(developer: Cli) -> None:
    human = developer("vm", "show", "0123456789abcdef")
    assert human.returncode == 3 and human.stderr.startswith("error: no VM")
    machine = developer("vm", "show", "0123456789abcdef", "--json")
    assert machine.returncode == 3 and machine.stdout == ""
    body = json.loads(machine.stderr)
    assert body["code"] == "not_found" and body["status"] == 404 and body["retry"] is False


def test_no_capacity_is_4(developer: Cli) -> None:
    out = developer("vm", "create", "--username", "dev", "--cpu", "200", "--memory", "1g")
    assert out.returncode == 4 and "no provider fits" in out.stderr


def test_usage_errors_are_2(developer: Cli) -> None:
    assert developer("vm", "create", "--username", "root").returncode == 2
    assert developer("vm", "create", "--username", "dev", "--memory", "lots").returncode == 2
    assert developer("vm", "show").returncode == 2  # click: missing argument


def test_not_logged_in_or_refused_token_is_6(developer: Cli, tmp_path: Path) -> None:
    out = run_cli(tmp_path / "nobody", "whoami", "--json")
    assert out.returncode == 6 and json.loads(out.stderr)["code"] == "not_logged_in"
    refused = developer("whoami", KUMULUS_TOKEN="kmt_not-a-token")
    assert refused.returncode == 6, refused.stderr
    # A developer's token is not a provider's: forbidden is 6 too.
    assert developer("provider", "host", "ls").returncode == 6


def test_an_unreachable_backend_is_8(developer: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    out = developer("vm", "ls", "--json", KUMULUS_BACKEND=f"http://127.0.0.1:{port}")
    assert out.returncode == 8
    assert json.loads(out.stderr)["code"] == "unreachable"


def test_a_vm_the_balance_cannot_hold_is_5(developer: Cli, provider: Cli, live: Platform) -> None:
    before = provider.json("provider", "host", "show", live.host_id)["prices"]
    dear = ["--cpu", "120", "--memory-gib", "1", "--disk-gib", "0.001"]
    assert provider("provider", "host", "price", live.host_id, *dear).returncode == 0
    made: list[str] = []
    try:
        # 8 vCPU at 120 tokens an hour: each VM's prepaid hold (10 min of use, 160 tokens)
        # comes out of the 1000 tokens of sign-up credit, until one cannot be paid for.
        for _ in range(8):
            out = developer("vm", "create", "--username", "dev", "--cpu", "8", "--no-wait",
                            "--json")  # fmt: skip
            if out.returncode != 0:
                break
            made.append(json.loads(out.stdout)["id"])
    finally:
        restore = ["--cpu", before["cpu"], "--memory-gib", before["memoryGib"]]
        restore += ["--disk-gib", before["diskGib"]]
        assert provider("provider", "host", "price", live.host_id, *restore).returncode == 0
        for vm_id in made:
            assert developer("vm", "rm", vm_id, "--no-wait").returncode == 0
    assert out.returncode == 5, (out.returncode, out.stderr)
    body = json.loads(out.stderr.splitlines()[-1])  # after the quote's line
    assert body["status"] == 402 and body["code"] == "insufficient_funds"
