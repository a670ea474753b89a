import subprocess
from pathlib import Path

import pytest

from kumulus.core.sshkeys import SSHKeyError, parse_ssh_public_key


def _keygen(tmp_path: Path, *args: str) -> str:
    key = tmp_path / "k"
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", "me@laptop", "-f", str(key), *args], check=True
    )
    return key.with_suffix(".pub").read_text().strip()


@pytest.mark.parametrize(
    "args",
    [
        ("-t", "ed25519"),
        ("-t", "ecdsa", "-b", "256"),
        ("-t", "ecdsa", "-b", "521"),
        ("-t", "rsa", "-b", "2048"),
    ],
)
def test_accepts_real_keys_with_ssh_keygen_fingerprint(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    line = _keygen(tmp_path, *args)
    parsed = parse_ssh_public_key(line + "\n")
    assert parsed.line == line
    fp = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert parsed.fingerprint == fp


def test_refuses_short_rsa(tmp_path: Path) -> None:
    with pytest.raises(SSHKeyError, match="at least 2048"):
        parse_ssh_public_key(_keygen(tmp_path, "-t", "rsa", "-b", "1024"))


def test_refuses_private_key(tmp_path: Path) -> None:
    _keygen(tmp_path, "-t", "ed25519")
    with pytest.raises(SSHKeyError, match="private key"):
        parse_ssh_public_key((tmp_path / "k").read_text())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "ssh-ed25519 not*base64",
        "ssh-dss AAAAB3NzaC1kc3M=",
        'command="rm -rf /" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG',
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",  # truncated key data
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ],  # type mismatch
)
def test_refuses_garbage(text: str) -> None:
    with pytest.raises(SSHKeyError):
        parse_ssh_public_key(text)


def test_refuses_two_lines(tmp_path: Path) -> None:
    line = _keygen(tmp_path, "-t", "ed25519")
    with pytest.raises(SSHKeyError, match="single line"):
        parse_ssh_public_key(line + "\n" + line)


def test_comment_is_sanitised(tmp_path: Path) -> None:
    line = _keygen(tmp_path, "-t", "ed25519")
    kind, blob = line.split()[:2]
    parsed = parse_ssh_public_key(f"{kind} {blob} evil\x1b[31m\tname")
    assert parsed.line == f"{kind} {blob} evil[31m name"
