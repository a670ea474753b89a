"""An agent whose ssh_public_host (or registration address) is not an IP address or a DNS
name refuses to start (or to register) rather than hand it to developers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from kumulus.agent.registration import RegistrationError, register
from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic

HOSTILE = ['127.0.0.1 "-oProxyCommand=touch /tmp/pwn"', "-oProxyCommand=x", "a b", "[::1]"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ssh_public_host_is_refused(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="host address"):
        AgentSettings(state_dir=tmp_path, ssh_public_host=bad)
    monkeypatch.setenv("KUMULUS_AGENT_SSH_PUBLIC_HOST", bad)
    with pytest.raises(ValidationError, match="ssh_public_host"):
        AgentSettings(state_dir=tmp_path)


def test_valid_ssh_public_host_is_normalised(tmp_path: Path) -> None:
    assert AgentSettings(state_dir=tmp_path).ssh_public_host is None
    assert AgentSettings(state_dir=tmp_path, ssh_public_host="VM.Example.com.").ssh_public_host == (
        "vm.example.com"
    )
    assert AgentSettings(state_dir=tmp_path, ssh_public_host="2001:db8:0::1").ssh_public_host == (
        "2001:db8::1"
    )


@pytest.mark.parametrize("bad", HOSTILE)
def test_registration_refuses_a_hostile_address_before_sending(bad: str, tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with pytest.raises(RegistrationError, match="cannot register: invalid host address"):
        register(
            state_dir=tmp_path,
            backend_key_file=tmp_path / "backend-address",
            keypair=keypair_from_mnemonic(new_mnemonic()),
            backend_url="http://127.0.0.1:1",
            provider_token="t",
            api_url="http://127.0.0.1:8000",
            public_ip=bad,
            host_info={"capacity": {"cpu": 1, "memory": 1, "disk": 1}, "diskQuotaSupported": True},
            http=httpx.Client(transport=httpx.MockTransport(refuse)),
        )
    assert not (tmp_path / "backend-address").exists()
