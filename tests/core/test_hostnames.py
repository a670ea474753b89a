"""Public host addresses: exactly an IP address or a DNS name, and ssh lines built from
them that a shell splits back into exactly the intended words."""

from __future__ import annotations

import ipaddress
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from kumulus.core.hostnames import (
    HostnameError,
    PublicHost,
    ssh_argv,
    ssh_command,
    ssh_problem,
    validate_public_host,
)
from kumulus.core.usernames import UsernameError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::1", "::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("vm1.Example.COM", "vm1.example.com"),
        ("host.example.com.", "host.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c1", "a-b.c1"),
        ("1host.example", "1host.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_accepted_and_normalised(value: str, expected: str) -> None:
    assert validate_public_host(value) == expected


HOSTILE = [
    '127.0.0.1 "-oProxyCommand=touch /tmp/pwn"',
    "-oProxyCommand=x",
    "-host.example.com",
    "host-.example.com",
    "a b",
    "1.2.3.4;id",
    "$(id)",
    "`id`",
    "host\n",
    "host.example.com\n",
    "\thost.example.com",
    "host.example.com\x00",
    "[::1]",
    "fe80::1%eth0",
    "user@host.example.com",
    "host.example.com:22",
    "1.2.3.4:22",
    "localhost",
    "example",
    "",
    ".",
    "..",
    "a..example",
    ".example.com",
    "host.example.com..",
    "1.2.3.999",
    "1.2.3",
    "01.2.3.4",
    "1.2.3.4.5",
    "under_score.example.com",
    "hôst.example.com",
    "'host.example.com'",
    "a" * 64 + ".example",
    ("a" * 62 + ".") * 4 + "example",  # 259 characters
    "x" * 300,
    ":::",
    "1::2::3",
    "\x1b]0;title\x07.example.com",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_refused(value: str) -> None:
    with pytest.raises(HostnameError) as info:
        validate_public_host(value)
    assert "host address" in str(info.value)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_refuses_what_is_not_a_string() -> None:
    with pytest.raises(HostnameError):
        validate_public_host(None)  # type: ignore[arg-type]
    with pytest.raises(HostnameError):
        validate_public_host(1234)  # type: ignore[arg-type]


def test_total_length_limit() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(name) == 253 and validate_public_host(name) == name
    with pytest.raises(HostnameError):
        validate_public_host(name + "b")


def test_is_a_value_error_and_works_in_schemas() -> None:
    assert issubclass(HostnameError, ValueError)

    class Body(BaseModel):
        host: PublicHost

    assert Body(host="Host.Example.com.").host == "host.example.com"
    with pytest.raises(ValidationError) as info:
        Body(host="-oProxyCommand=x")
    assert "host address" in str(info.value)


def test_ssh_argv_and_command() -> None:
    assert ssh_argv("203.0.113.5", 2201, "dev") == ["ssh", "-p", "2201", "--", "dev@203.0.113.5"]
    # No brackets: OpenSSH would look up "[2001:db8::1]" as a name.
    assert ssh_argv("2001:db8::1", 22, "dev")[-1] == "dev@2001:db8::1"
    assert ssh_command("203.0.113.5", 2201, "dev") == "ssh -p 2201 dev@203.0.113.5"
    assert ssh_command("2001:DB8::1", 22, "dev") == "ssh -p 22 dev@2001:db8::1"
    for port in (0, 65536, -1, "22", "22 -oX", None, True, 22.0):
        with pytest.raises(ValueError, match="port"):
            ssh_argv("203.0.113.5", port, "dev")
    with pytest.raises(UsernameError):
        ssh_argv("203.0.113.5", 22, "-oProxyCommand=x")
    with pytest.raises(HostnameError):
        ssh_command('127.0.0.1 "-oProxyCommand=touch /tmp/pwn"', 22, "dev")


def test_ssh_problem() -> None:
    assert ssh_problem(None, None, "dev") is None  # no address yet
    assert ssh_problem("203.0.113.5", 2201, "dev") is None
    assert ssh_problem("203.0.113.5", None, "dev") is None
    problem = ssh_problem('127.0.0.1 "-oProxyCommand=touch /tmp/pwn"', 22, "dev")
    assert problem is not None and "not a valid IP address or DNS name" in problem
    assert "ProxyCommand" not in problem  # the hostile value is never repeated
    assert ssh_problem("-oProxyCommand=x", None, "dev") is not None
    assert "port" in (ssh_problem("203.0.113.5", 70000, "dev") or "")
    assert "username" in (ssh_problem("203.0.113.5", 22, "Bad User") or "")


# -- properties ---------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_names = st.lists(_label, min_size=2, max_size=5).map(".".join)
_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
_users = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True).filter(
    lambda u: u not in ("root", "sshd", "ssh", "admin", "adm", "src")
)


@given(
    host=st.one_of(_names, _ips, st.text(max_size=80)),
    port=st.integers(1, 65535),
    user=_users,
)
def test_anything_accepted_splits_into_exactly_the_expected_argv(
    host: str, port: int, user: str
) -> None:
    try:
        checked = validate_public_host(host)
        argv = ssh_argv(host, port, user)
    except (HostnameError, UsernameError):
        return
    assert not checked.startswith("-")
    assert checked == validate_public_host(checked)  # normal form is stable
    # A shell reading the pasted line, or the raw string after "user@", gives one word.
    assert shlex.split(f"ssh -p 22 -- {user}@{checked}") == ["ssh", "-p", "22", "--", argv[-1]]
    assert argv == ["ssh", "-p", str(port), "--", f"{user}@{checked}"]
    assert shlex.split(ssh_command(host, port, user)) == [a for a in argv if a != "--"]


@given(st.text(max_size=80))
def test_arbitrary_text_is_refused_or_an_ip_or_a_name(value: str) -> None:
    try:
        checked = validate_public_host(value)
    except HostnameError:
        return
    assert all(ch.isascii() and (ch.isalnum() or ch in ".:-") for ch in checked)
    try:
        ipaddress.ip_address(checked)
    except ValueError:
        assert "." in checked and not checked.split(".")[-1].isdigit()


@given(_names)
def test_generated_names_are_accepted(name: str) -> None:
    if name.split(".")[-1].isdigit():
        return
    assert validate_public_host(name) == name.lower()


@given(_ips)
def test_generated_ips_are_accepted(ip: str) -> None:
    assert validate_public_host(ip) == ipaddress.ip_address(ip).compressed
