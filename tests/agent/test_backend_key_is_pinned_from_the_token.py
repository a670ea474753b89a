"""The backend key an agent pins comes from the one-time host token (out of band), never
from the registration answer alone: an answer naming another key pins nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kumulus.agent.registration import RegistrationError, load_registration, register
from kumulus.core.host_tokens import backend_address_in, host_token_kind
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic

BACKEND = keypair_from_mnemonic(new_mnemonic()).ss58_address
INTRUDER = keypair_from_mnemonic(new_mnemonic()).ss58_address
TOKEN = f"{host_token_kind(BACKEND)}_s3cr-et_x"


def _register(tmp_path: Path, token: str, answered: str, **kw: str) -> list[httpx.Request]:
    sent: list[httpx.Request] = []

    def backend(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"hostId": "h1", "backendAddress": answered})

    register(
        state_dir=tmp_path,
        backend_key_file=tmp_path / "backend-address",
        keypair=keypair_from_mnemonic(new_mnemonic()),
        backend_url="http://backend.invalid",
        provider_token=token,
        api_url="http://127.0.0.1:8000",
        public_ip="127.0.0.1",
        host_info={"capacity": {"cpu": 1, "memory": 1, "disk": 1}, "diskQuotaSupported": True},
        http=httpx.Client(transport=httpx.MockTransport(backend)),
        **kw,
    )
    return sent


def test_the_tokens_key_is_pinned(tmp_path: Path) -> None:
    assert backend_address_in(TOKEN) == BACKEND
    _register(tmp_path, TOKEN, BACKEND)
    assert (tmp_path / "backend-address").read_text().strip() == BACKEND
    reg = load_registration(tmp_path)
    assert reg is not None and reg.backend_address == BACKEND


def test_an_answer_with_another_key_pins_nothing(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="other than the one in the token"):
        _register(tmp_path, TOKEN, INTRUDER)
    assert not (tmp_path / "backend-address").exists()
    assert load_registration(tmp_path) is None


@pytest.mark.parametrize(
    "token",
    ["kmh_abc", "kmh_notanaddress_abc", f"kmt_{BACKEND}_abc"],
    ids=["no-address", "not-an-address", "api-token"],  # stable across pytest-xdist workers
)
def test_a_token_without_a_backend_key_is_refused_before_sending(
    tmp_path: Path, token: str
) -> None:
    assert backend_address_in(token) is None
    with pytest.raises(RegistrationError, match="carries no backend key"):
        _register(tmp_path, token, BACKEND)
    assert not (tmp_path / "backend-address").exists()


def test_a_key_given_out_of_band_stands_in_for_the_tokens(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="other than"):
        _register(tmp_path, TOKEN, BACKEND, backend_address=INTRUDER)
    assert _register(tmp_path, "kmh_old", BACKEND, backend_address=BACKEND)
    assert (tmp_path / "backend-address").read_text().strip() == BACKEND
