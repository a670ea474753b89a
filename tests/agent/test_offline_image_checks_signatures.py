"""The offline image build checks Debian's archive signatures: debootstrap gets the archive
keyring and --force-check-gpg (never --no-check-gpg), and without the keyring the build
stops with how to install it instead of building from unverified packages."""

from pathlib import Path

import pytest

from kumulus.agent.images import ImageBuildError, debootstrap_command


def test_debootstrap_is_told_to_check_signatures(tmp_path: Path) -> None:
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(b"keys")
    argv = debootstrap_command("/usr/sbin/debootstrap", tmp_path / "rootfs", "http://m", keyring)
    assert f"--keyring={keyring}" in argv and "--force-check-gpg" in argv
    assert not any("no-check-gpg" in arg for arg in argv)
    assert argv[-3:] == ["bookworm", str(tmp_path / "rootfs"), "http://m"]


def test_no_keyring_no_build(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="apt-get install debian-archive-keyring"):
        debootstrap_command(
            "/usr/sbin/debootstrap", tmp_path / "rootfs", "http://m", tmp_path / "none.gpg"
        )
