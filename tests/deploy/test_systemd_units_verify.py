"""The systemd units in deploy/systemd, and the agent's unit and lxcfs drop-in that
provider-setup.sh writes on providers' hosts, pass `systemd-analyze verify` (Debian's
systemd package; these machines run no systemd, the binary works without it): no unknown
key, no value systemd would ignore, every referenced unit known."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
UNITS = REPO / "deploy" / "systemd"
SETUP = REPO / "src" / "kumulus" / "backend" / "provider-setup.sh"
# The binaries the units start: as installed by the README's production steps, and by
# provider-setup.sh.
EXECUTABLES = ("opt/kumulus/.venv/bin/kumulus", "opt/kumulus/venv/bin/kumulus")


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


def _written_by_setup(target: str) -> str:
    """The file provider-setup.sh writes to `$target` (a here-document), with the script's
    own values for the variables in it."""
    script = SETUP.read_text()
    values = dict(re.findall(r"^([A-Z_]+)=(\S+|\"[^\"]*\")", script, re.MULTILINE))
    body = re.search(rf'write_if_changed "\${target}" 0644 <<EOF\n(.*?)\nEOF\n', script, re.DOTALL)
    assert body is not None, f"provider-setup.sh no longer writes ${target} this way"

    def value(name: str) -> str:
        raw = values[name].strip('"')
        return re.sub(r"\$([A-Z_]+)", lambda m: value(m.group(1)), raw)

    text = re.sub(r"\$([A-Z_]+)", lambda m: value(m.group(1)), body.group(1))
    assert "$" not in text
    return text + "\n"


def test_the_units_provider_setup_writes_verify_clean(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    root = _root(tmp_path)
    (root / "etc/systemd/system/kumulus-agent.service").write_text(_written_by_setup("UNIT"))
    dropin = root / "etc/systemd/system/lxcfs.service.d/kumulus.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text(_written_by_setup("LXCFS_DROPIN"))
    (root / "bin").symlink_to("usr/bin")
    for name in ("lxcfs", "kill", "umount", "fusermount"):  # what the lxcfs unit starts
        stand_in = root / "usr/bin" / name
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    assert (
        "ExecStart=/opt/kumulus/venv/bin/kumulus agent run"
        in (root / "etc/systemd/system/kumulus-agent.service").read_text()
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", "kumulus-agent.service", "lxcfs.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
