import pytest

from kumulus.core.usernames import UsernameError, validate_username


@pytest.mark.parametrize("name", ["devtest", "alice", "_svc", "a", "dev-1", "x" * 32])
def test_accepts_linux_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Dev", "1abc", "-rf", "a b", "x" * 33, "dev$", "dév", "a;id", "../etc", "a\nb"],
)
def test_refuses_invalid_usernames(name: str) -> None:
    with pytest.raises(UsernameError, match="invalid username"):
        validate_username(name)


@pytest.mark.parametrize("name", ["root", "sudo", "sshd", "nobody", "ubuntu", "systemd-foo", "adm"])
def test_refuses_reserved_names(name: str) -> None:
    with pytest.raises(UsernameError, match="reserved"):
        validate_username(name)
