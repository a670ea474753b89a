"""A VM's host key comes from its provider's agent and ends up in a developer's known_hosts:
exactly one `<type> <base64>` key is accepted, its fingerprint is computed (as `ssh-keygen
-lf` prints it), and a VM answer whose fingerprint is not its key's is refused."""

from __future__ import annotations

import base64
import secrets
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kumulus.core.hostkeys import HostKeyError, host_key_alias, parse_host_key
from kumulus.core.schemas import VMPublic


def _keygen(tmp_path: Path, kind: str, bits: str | None = None) -> str:
    path = tmp_path / f"key-{secrets.token_hex(4)}"
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)]
    subprocess.run(argv + (["-b", bits] if bits else []), check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _ssh_keygen_fingerprint(line: str, tmp_path: Path) -> str:
    pub = tmp_path / "check.pub"
    pub.write_text(line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


@pytest.mark.parametrize(("kind", "bits"), [("ed25519", None), ("ecdsa", "384"), ("rsa", "2048")])
def test_a_key_line_is_accepted_with_the_fingerprint_ssh_keygen_prints(
    tmp_path: Path, kind: str, bits: str | None
) -> None:
    line = _keygen(tmp_path, kind, bits)
    key = parse_host_key(line)
    assert key.line == line
    assert key.fingerprint == _ssh_keygen_fingerprint(line, tmp_path)


def test_anything_but_exactly_one_key_is_refused(tmp_path: Path) -> None:
    good = _keygen(tmp_path, "ed25519")
    other = _keygen(tmp_path, "ed25519")
    kind, blob = good.split()
    ecdsa_blob = _keygen(tmp_path, "ecdsa", "256").split()[1]
    weak_rsa = _keygen(tmp_path, "rsa", "1024")
    hostile: list[Any] = [
        f"{good}\n{other}",  # two keys
        f"{good}\n",  # a line break is a second line in known_hosts
        f"{good} comment",
        f"{good} vm-x {other}",
        f" {good}",
        f"{kind}  {blob}",
        f'command="sh" {good}',
        f"@cert-authority * {good}",
        f"{kind}\t{blob}",
        f"ssh-ed25519 {ecdsa_blob}",  # the data is another type of key
        f"ssh-dss {blob}",
        weak_rsa,
        f"{kind} {blob[:-4]}",  # cut short
        f"{kind} {base64.b64encode(b'not a key').decode()}",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "",
        f"{kind} {blob}{'A' * 5000}",
        None,
        ["ssh-ed25519", blob],
    ]
    for text in hostile:
        with pytest.raises(HostKeyError) as caught:
            parse_host_key(text)
        assert blob not in str(caught.value)  # the provider's text is never repeated


def _answer(**over: Any) -> dict[str, Any]:
    return {
        "vmId": "0123456789abcdef",
        "username": "dev",
        "sshHost": "203.0.113.5",
        "sshPort": 2201,
        "sshCommand": "ssh -p 2201 dev@203.0.113.5",
        "status": "Running",
        "state": "running",
        "cpu": 1,
        "memory": "1g",
        "disk": "10g",
        "createdAt": datetime.now(UTC).isoformat(),
        **over,
    }


def test_a_vm_answer_carries_a_key_and_its_own_fingerprint_or_neither(tmp_path: Path) -> None:
    line = _keygen(tmp_path, "ed25519")
    fingerprint = parse_host_key(line).fingerprint
    other = parse_host_key(_keygen(tmp_path, "ed25519")).fingerprint
    assert VMPublic.model_validate(_answer(hostKey=line, hostKeyFingerprint=fingerprint))
    assert VMPublic.model_validate(_answer()).host_key is None  # from an older agent
    for lie in (
        _answer(hostKey=line, hostKeyFingerprint=other),
        _answer(hostKey=line),
        _answer(hostKeyFingerprint=fingerprint),
        _answer(hostKey=line + "\n" + line, hostKeyFingerprint=fingerprint),
    ):
        with pytest.raises(ValidationError):
            VMPublic.model_validate(lie)


def test_the_alias_is_vm_and_the_id_and_nothing_else() -> None:
    assert host_key_alias("0123456789abcdef") == "vm-0123456789abcdef"
    for bad in ("", "a b", "x,y", "ID", "a\nb", "-oProxyCommand=x", "a" * 33, None, 7):
        with pytest.raises(ValueError):
            host_key_alias(bad)
