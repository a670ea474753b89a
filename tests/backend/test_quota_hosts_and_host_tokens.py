"""A provider has at most `max_host_tokens` unused host tokens and `max_hosts` hosts that
are not revoked, unused tokens counting as hosts to come: 409 `quota_exceeded` with the
limit, when the token is asked for and again when a host registers."""

from __future__ import annotations

from pathlib import Path

from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_payload
from tests.backend.limits_fixtures import client_of, settings_with
from tests.backend.test_quota_ssh_keys import assert_quota


def test_host_tokens_and_hosts_are_capped(tmp_path: Path, database_url: str) -> None:
    settings = settings_with(tmp_path, database_url, max_host_tokens=2, max_hosts=2)
    wallet = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings) as client:
        provider = Actor(client, "provider")
        link_wallet(client, provider, wallet)

        def token() -> object:
            return client.post("/v1/provider/host-tokens", headers=provider.headers)

        def register(value: str) -> object:
            host_key = keypair_from_mnemonic(new_mnemonic())
            env = sign_envelope(host_key, register_payload(value), domain=Domain.HOST_REGISTRATION)
            return client.post("/v1/hosts/register", json=env.model_dump())

        first, second = token().json()["token"], token().json()["token"]
        assert_quota(token(), 2, "unused host tokens")
        assert register(first).status_code == 201
        # One host and one unused token: the host quota has no room for another token.
        assert_quota(token(), 2, "hosts")
        assert register(second).status_code == 201
        assert_quota(token(), 2, "hosts")
        hosts = client.get("/v1/provider/hosts", headers=provider.headers).json()["items"]
        assert len(hosts) == 2


def test_a_registration_past_the_host_quota_is_refused(tmp_path: Path, database_url: str) -> None:
    settings = settings_with(tmp_path, database_url, max_hosts=1)
    wallet = keypair_from_mnemonic(new_mnemonic())
    with client_of(settings) as client:
        provider = Actor(client, "provider")
        link_wallet(client, provider, wallet)
        made = client.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
        # The operator lowered the quota after the token was made (a restart with new
        # settings): the registration checks again, under the account's lock.
        client.app.state.settings.max_hosts = 0  # type: ignore[attr-defined]
        host_key = keypair_from_mnemonic(new_mnemonic())
        env = sign_envelope(host_key, register_payload(made), domain=Domain.HOST_REGISTRATION)
        refused = client.post("/v1/hosts/register", json=env.model_dump())
        assert_quota(refused, 0, "hosts")
        assert client.get("/v1/provider/hosts", headers=provider.headers).json()["items"] == []
