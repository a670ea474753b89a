"""The systemd units in deploy/systemd pass `systemd-analyze verify` (Debian's systemd
package; these machines run no systemd, the binary works without it): no unknown key, no
value systemd would ignore, every referenced unit known."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
# The binaries the units start, as installed by the README's production steps.
EXECUTABLES = ("opt/kumulus/.venv/bin/kumulus",)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("systemd-analyze required (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return found


def _root(tmp_path: Path) -> Path:
    """A file system root with the distribution's units, ours and stand-ins for the
    binaries they start: verify checks that ExecStart= is executable."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    shutil.copytree(UNITS, root / "etc/systemd/system", ignore=shutil.ignore_patterns("*.env*"))
    for executable in EXECUTABLES:
        path = root / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", ["kumulus-backend@8081.service"])
def test_unit_verifies_clean(unit: str, tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={_root(tmp_path)}", unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Problems in a unit are warnings on stderr with exit status 0: any output fails.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_unit_is_verified() -> None:
    templates = {p.name for p in UNITS.glob("*.service")}
    assert templates == {"kumulus-backend@.service"}
