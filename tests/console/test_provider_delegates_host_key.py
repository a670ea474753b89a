"""The provider console's host page delegates a pending host's key with the wallet: the
signature `kumulus wallet sign` prints for the command the page shows makes the host
delegated; a signature by another wallet is refused on the page and changes nothing; the
key can be revoked (for good)."""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from substrateinterface import Keypair
from typer.testing import CliRunner

from kumulus.backend.models import Host
from kumulus.cli import app
from kumulus.core.signing import (
    Domain,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
    write_secret_file,
)
from tests.backend.conftest import register_payload
from tests.console.conftest import csrf_of, field_errors, signup

PASSWORD = "correct horse battery"


def _pending_host(server: TestClient, email: str, wallet: Keypair) -> str:
    """A provider (console session) with `wallet` linked and a host registered with a
    host key of its own (pending)."""
    signup(server, email, role="provider")
    login = server.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    challenge = server.post("/v1/provider/wallet/challenge", headers=headers).json()
    linked = server.post(
        "/v1/provider/wallet/link",
        headers=headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
        },
    )
    assert linked.status_code == 200, linked.text
    token = server.post("/v1/provider/host-tokens", headers=headers).json()["token"]
    host_key = keypair_from_mnemonic(new_mnemonic())
    env = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    resp = server.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201 and resp.json()["hostKeyState"] == "pending", resp.text
    return str(resp.json()["hostId"])


def _row(server: TestClient, host_id: str) -> Host:
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        host: Host | None = db.scalar(select(Host).where(Host.id == host_id))
        assert host is not None
        db.expunge(host)
        return host


def _sign_as_the_page_says(page: str, mnemonic_file: Path) -> str:
    """Run the command the page shows (`kumulus wallet sign "TEXT"`) with a mnemonic file
    and return the signature it prints."""
    shown = re.search(r'<pre id="sign-command">([^<]+)</pre>', page)
    assert shown, page
    argv = shlex.split(html.unescape(shown.group(1)))
    assert argv[:3] == ["kumulus", "wallet", "sign"], argv
    out = CliRunner().invoke(app, [*argv[1:3], "--mnemonic-file", str(mnemonic_file), argv[3]])
    assert out.exit_code == 0, out.output
    return out.output.split("signature:")[1].strip()


def test_a_pasted_signature_delegates_the_host_key(server: TestClient, tmp_path: Path) -> None:
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    write_secret_file(tmp_path / "wallet", mnemonic)
    host_id = _pending_host(server, "prov-deleg@example.com", wallet)
    url = f"/console/provider/hosts/{host_id}"
    page = server.get(url).text
    assert 'id="key-state">Pending' in page and "Delegate this host&#39;s key" in page
    message = html.unescape(re.search(r'name="message" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    csrf = csrf_of(server, url)

    # Signed by a wallet that is not the linked one: refused next to the field.
    stranger = keypair_from_mnemonic(new_mnemonic())
    wrong = "0x" + bytes(stranger.sign(b"<Bytes>" + message.encode() + b"</Bytes>")).hex()
    resp = server.post(
        f"{url}/delegation", data={"csrf": csrf, "message": message, "signature": wrong}
    )
    assert resp.status_code == 401
    assert any("delegation refused" in e for e in field_errors(resp.text)), resp.text
    assert _row(server, host_id).host_key_state == "pending"
    garbage = server.post(
        f"{url}/delegation", data={"csrf": csrf, "message": message, "signature": "0xzz"}
    )
    assert garbage.status_code in (401, 422) and field_errors(garbage.text)

    signature = _sign_as_the_page_says(page, tmp_path / "wallet")
    resp = server.post(
        f"{url}/delegation", data={"csrf": csrf, "message": message, "signature": signature}
    )
    assert resp.status_code == 200, resp.text
    assert "Host key delegated." in resp.text and 'id="key-expiry"' in resp.text
    host = _row(server, host_id)
    assert host.host_key_state == "delegated" and host.delegated_until is not None
    assert host.delegation == message


def test_a_delegation_text_of_another_host_is_refused(server: TestClient) -> None:
    wallet = keypair_from_mnemonic(new_mnemonic())
    host_id = _pending_host(server, "prov-other@example.com", wallet)
    url = f"/console/provider/hosts/{host_id}"
    message = html.unescape(
        re.search(r'name="message" value="([^"]+)"', server.get(url).text).group(1)  # type: ignore[union-attr]
    ).replace(f"host {host_id} ", "host 0123456789abcdef ")
    signature = "0x" + bytes(wallet.sign(message.encode())).hex()
    resp = server.post(
        f"{url}/delegation",
        data={"csrf": csrf_of(server, url), "message": message, "signature": signature},
    )
    assert resp.status_code == 422 and "another host" in resp.text
    assert _row(server, host_id).host_key_state == "pending"


def test_the_host_key_can_be_revoked(server: TestClient) -> None:
    wallet = keypair_from_mnemonic(new_mnemonic())
    host_id = _pending_host(server, "prov-revoke@example.com", wallet)
    url = f"/console/provider/hosts/{host_id}"
    page = server.get(url).text
    assert 'id="revoke-key"' in page and "data-confirm=" in page
    forged = server.post(f"{url}/revoke-key", data={"csrf": "not-the-token"})
    assert forged.status_code == 403 and _row(server, host_id).host_key_state == "pending"
    resp = server.post(f"{url}/revoke-key", data={"csrf": csrf_of(server, url)})
    assert resp.status_code == 200 and "Host key revoked" in resp.text
    assert _row(server, host_id).host_key_state == "revoked"
    assert 'id="key-state">Revoked' in resp.text and 'id="revoke-key"' not in resp.text
    assert 'id="delegate-form"' not in resp.text  # nothing left to sign


def test_another_providers_host_is_not_found(server: TestClient) -> None:
    host_id = _pending_host(server, "prov-owner@example.com", keypair_from_mnemonic(new_mnemonic()))
    server.cookies.clear()
    signup(server, "prov-intruder@example.com", role="provider")
    url = f"/console/provider/hosts/{host_id}"
    resp = server.post(
        f"{url}/revoke-key", data={"csrf": csrf_of(server, "/console/provider/hosts")}
    )
    assert resp.status_code == 404
    assert _row(server, host_id).host_key_state == "pending"
