"""What the setup script fetches from the backend: the script (with this backend's URL),
the agent package, and the wallet a provider token is for."""

import io
import tarfile

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from tests.backend.conftest import Actor, link_wallet


def test_script_is_served_with_this_backends_url(backend: TestClient) -> None:
    resp = backend.get("/provider-setup.sh")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/x-shellscript")
    assert resp.text.startswith("#!/usr/bin/env bash")
    assert "BACKEND=${KUMULUS_BACKEND_URL:-http://testserver}" in resp.text


def test_agent_package_is_an_installable_sdist(backend: TestClient) -> None:
    head = backend.head("/downloads/kumulus-agent.tar.gz")
    assert head.status_code == 200 and head.headers["x-kumulus-version"]
    resp = backend.get("/downloads/kumulus-agent.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        names = set(tar.getnames())
        top = f"kumulus-{head.headers['x-kumulus-version']}"
        pyproject = tar.extractfile(f"{top}/pyproject.toml").read().decode()  # type: ignore[union-attr]
    assert f"{top}/src/kumulus/cli.py" in names
    assert f"{top}/src/kumulus/agent/image/Dockerfile" in names
    assert not any("__pycache__" in n for n in names)
    assert '"substrate-interface' in pyproject and "pytest" not in pyproject


def test_token_info_names_the_linked_wallet(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    info = backend.post("/v1/hosts/token-info", json={"providerToken": token})
    assert info.status_code == 200 and info.json()["walletAddress"] == wallet.ss58_address
    bad = backend.post("/v1/hosts/token-info", json={"providerToken": "kmh_nope"})
    assert bad.status_code == 401 and "create a new one" in bad.json()["detail"]
    assert backend.post("/v1/hosts/token-info", json={}).status_code == 422
