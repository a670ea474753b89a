"""The developer CLI against a real backend process: signup, login, keys, clear errors."""

import subprocess
from pathlib import Path

from tests.cli_runner import run_cli
from tests.e2e.agent_process import BackendProcess


def _kumulus(args: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, stdin=stdin)


def test_cli_signup_login_keys_and_errors(tmp_path: Path, ssh_keypair: tuple[Path, str]) -> None:
    backend = BackendProcess(tmp_path / "backend").start()
    try:
        home = tmp_path / "home"
        out = _kumulus(
            ["signup", "--backend", backend.url, "--email", "d@example.com", "--password-stdin"],
            home,
            "password123456\n",
        )
        assert out.returncode == 0, out.stderr
        bad = _kumulus(
            ["login", "--backend", backend.url, "--email", "d@example.com", "--password-stdin"],
            home,
            "wrong-password\n",
        )
        assert bad.returncode == 6 and "wrong email or password" in bad.stderr
        assert "Traceback" not in bad.stderr
        out = _kumulus(
            ["login", "--backend", backend.url, "--email", "d@example.com", "--password-stdin"],
            home,
            "password123456\n",
        )
        assert out.returncode == 0 and "logged in" in out.stdout
        cfg = home / "kumulus" / "cli.json"
        assert cfg.stat().st_mode & 0o777 == 0o600
        assert "password123456" not in cfg.read_text()

        out = _kumulus(["ssh-key", "add", str(ssh_keypair[0]) + ".pub", "--name", "laptop"], home)
        assert out.returncode == 0, out.stderr
        listed = _kumulus(["ssh-key", "ls"], home).stdout
        assert "laptop" in listed and "SHA256:" in listed and "FINGERPRINT" in listed

        out = _kumulus(["vm", "create", "--username", "dev", "--cpu", "1", "--memory", "1g"], home)
        assert out.returncode == 4  # no capacity
        assert "no provider fits: no host is online" in out.stderr
        out = _kumulus(["vm", "create", "--username", "root"], home)
        assert out.returncode == 2 and "reserved" in out.stderr
        assert "ID" in _kumulus(["vm", "ls"], home).stdout
    finally:
        backend.stop()


def test_cli_without_login_says_how(tmp_path: Path) -> None:
    out = _kumulus(["vm", "ls"], tmp_path / "empty")
    assert out.returncode == 6 and "kumulus login" in out.stderr
