"""`kumulus vm ssh ID -- CMD ...` runs ssh with the command after the destination and
exits with ssh's status (a fake ssh first on PATH records its argv and exits 7)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.cli.conftest import Cli
from tests.cli_runner import run_cli

FAKE_SSH = """#!{python}
import json, sys
json.dump(sys.argv[1:], open({record!r}, "w"))
sys.exit(7)
"""


def test_the_remote_command_and_its_status_pass_through(developer: Cli, tmp_path: Path) -> None:
    out = developer("vm", "create", "--username", "dev", "--memory", "512m", "--disk", "2g",
                    "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    vm = json.loads(out.stdout)
    record = tmp_path / "argv.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable, record=str(record)))
    (bin_dir / "ssh").chmod(0o755)
    ran = run_cli(
        developer.home, "vm", "ssh", vm["id"], "--", "uptime", "-p",
        path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        extra_env={"KUMULUS_BACKEND": developer.backend, "KUMULUS_TOKEN": developer.token},
    )  # fmt: skip
    assert ran.returncode == 7, ran.stderr
    argv = json.loads(record.read_text())
    assert argv[-4:] == ["--", f"dev@{vm['sshHost']}", "uptime", "-p"]
    assert "StrictHostKeyChecking=yes" in argv
    developer("vm", "rm", vm["id"])
