"""What the setup script fetches from the backend: the script (with this backend's URL),
the agent package, and the wallet a provider token is for."""

import hashlib
import io
import tarfile

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend import package_source, setup_script
from kumulus.backend.app import create_app
from kumulus.config import BackendSettings
from tests.backend.conftest import Actor, link_wallet


def _with_public_url(backend_settings: BackendSettings, url: str) -> TestClient:
    # A backend with a public URL answers to that host name (and the configured aliases).
    settings = backend_settings.model_copy(
        update={"public_url": url, "allowed_hosts": ["alias.example"]}
    )
    return TestClient(create_app(settings), base_url=url)


def test_script_is_served_with_the_public_url_and_the_package_sha256(
    backend_settings: BackendSettings,
) -> None:
    with _with_public_url(backend_settings, "https://kumulus.example/") as client:
        assert client.get("/provider-setup.sh", headers={"Host": "evil.example"}).status_code == 400
        resp = client.get("/provider-setup.sh", headers={"Host": "alias.example"})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/x-shellscript")
        assert resp.headers["cache-control"] == "no-store"  # never a stale script from a cache
        assert resp.text.startswith("#!/usr/bin/env bash")
        assert "BACKEND=${KUMULUS_BACKEND_URL:-https://kumulus.example}" in resp.text
        assert "alias.example" not in resp.text  # never the request's Host header
        package = client.get("/downloads/kumulus-agent.tar.gz").content
        digest = hashlib.sha256(package).hexdigest()
        assert f"AGENT_SHA256=${{KUMULUS_AGENT_SHA256:-{digest}}}" in resp.text
        line = client.get("/downloads/kumulus-agent.tar.gz.sha256").text
        assert line == f"{digest}  kumulus-agent.tar.gz\n"


def test_no_public_url_no_script(backend: TestClient) -> None:
    resp = backend.get("/provider-setup.sh")
    assert resp.status_code == 503 and resp.json()["code"] == "no_public_url"


def test_the_agent_package_is_reproducible() -> None:
    first = package_source.package_tarball()
    package_source.package_tarball.cache_clear()
    assert package_source.package_tarball() == first  # every replica serves the same bytes


def test_the_setup_command_checks_the_script_it_runs(backend_settings: BackendSettings) -> None:
    settings = backend_settings.model_copy(update={"public_url": "https://kumulus.example"})
    script = setup_script.served_script(settings)
    command = setup_script.setup_command(settings, "tok-123")
    digest = hashlib.sha256(script.encode()).hexdigest()
    assert command == (
        "curl -fsSL -o kumulus-setup.sh https://kumulus.example/provider-setup.sh && "
        f"echo '{digest} *kumulus-setup.sh' | sha256sum -c - && "
        "sudo bash kumulus-setup.sh --token tok-123"
    )
    plain = settings.model_copy(update={"public_url": "http://127.0.0.1:8080"})
    assert setup_script.setup_command(plain, "t").endswith("--token t --insecure-http")


def test_agent_package_is_an_installable_sdist(backend: TestClient) -> None:
    head = backend.head("/downloads/kumulus-agent.tar.gz")
    assert head.status_code == 200 and head.headers["x-kumulus-version"]
    resp = backend.get("/downloads/kumulus-agent.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        names = set(tar.getnames())
        top = f"kumulus-{head.headers['x-kumulus-version']}"
        pyproject = tar.extractfile(f"{top}/pyproject.toml").read().decode()  # type: ignore[union-attr]
    assert f"{top}/src/kumulus/cli/__init__.py" in names
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
