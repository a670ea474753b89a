"""The developer CLI never writes control characters it got from the server to the terminal.

A provider's agent chooses the `detail` of its errors, and the backend passes it on
("the host refused: ..." on start/stop/logs, "VM ... failed: host ...: ..." on create), so
a hostile provider could otherwise send escape sequences to a developer's terminal: clear
or rewrite the screen, set the window title, or (OSC 52) put a command in the clipboard.
Rows of `vm ls` / `ssh-key ls` are server text too."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_bodies import vm_body
from tests.cli_runner import run_cli
from tests.json_server import JsonServer

# Clear the screen, set the clipboard (OSC 52) to "rm -rf ~", then a CSI in its 8-bit form.
HOSTILE = "\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07boom\x9b31m"


def _hostile(method: str, _path: str) -> tuple[int, Any]:
    """A backend passing on a hostile agent's error detail, and rows of hostile text."""
    if method == "GET":
        vm = vm_body(name="vm" + HOSTILE, sshHost="203.0.113.5" + HOSTILE)
        return 200, {"items": [vm], "next": None}
    return 502, {"detail": f"the host refused: {HOSTILE}", "code": "upstream", "retry": False}


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with JsonServer(_hostile) as backend:
        (tmp_path / "kumulus").mkdir()
        (tmp_path / "kumulus" / "cli.json").write_text(
            json.dumps({"backend": backend.url, "token": "kmt_test"})
        )
        yield tmp_path


def _kumulus(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args)


def _no_controls(text: str) -> None:
    bad = [c for c in text if not c.isprintable() and c != "\n"]
    assert not bad, f"control characters reached the terminal: {bad!r}"


@pytest.mark.parametrize("action", ["start", "stop"])
def test_an_error_detail_is_printed_without_escapes(home: Path, action: str) -> None:
    out = _kumulus(home, "vm", action, "v1")
    assert out.returncode == 1
    assert "the host refused" in out.stderr and "boom" in out.stderr
    _no_controls(out.stderr)
    _no_controls(out.stdout)


def test_list_rows_are_printed_without_escapes(home: Path) -> None:
    out = _kumulus(home, "vm", "ls")
    assert out.returncode == 0, out.stderr
    assert "boom" in out.stdout
    _no_controls(out.stdout)
