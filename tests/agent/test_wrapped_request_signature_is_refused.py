"""The agent takes backend calls signed over the exact request bytes only: the same call
signed the way a browser extension signs (`<Bytes>`-wrapped) by the pinned key is a 401."""

from fastapi.testclient import TestClient

from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, sign_request
from tests.wallet_extension import ExtensionSigner


def test_wrapped_signature_by_the_pinned_key_is_refused(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    audience = (agent_settings.state_dir / "agent-id").read_text().strip()
    del fake_agent.headers["Authorization"]
    wrapped = sign_request(
        ExtensionSigner(backend).as_keypair(), "GET", "/v1/vms", b"", audience=audience
    )
    resp = fake_agent.get("/v1/vms", headers=wrapped)
    assert resp.status_code == 401
    assert "bad signature" in resp.json()["detail"]
    exact = sign_request(backend, "GET", "/v1/vms", b"", audience=audience)
    assert fake_agent.get("/v1/vms", headers=exact).status_code == 200
