"""The agent answers every error with the one ErrorBody and pages its VM list."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kumulus.core.schemas import ErrorBody


def test_errors_have_the_body(fake_agent: TestClient) -> None:
    cases = [
        (fake_agent.get("/v1/vms/0123456789abcdef"), 404, "not_found"),
        (fake_agent.post("/v1/vms", json={"cpu": "x"}), 422, "invalid"),
        (fake_agent.get("/v1/vms", headers={"Authorization": "Bearer nope"}), 401, "unauthorized"),
        (fake_agent.get(f"/v1/vms/{'a' * 65}"), 422, "invalid"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        body = ErrorBody.model_validate(resp.json())
        assert body.code == code and body.detail
    invalid = fake_agent.post("/v1/vms", json={"cpu": "x"}).json()
    assert {tuple(f["loc"]) for f in invalid["fields"]} >= {("body", "cpu"), ("body", "username")}


def test_vm_list_is_a_page(fake_agent: TestClient) -> None:
    page = fake_agent.get("/v1/vms", params={"limit": 1}).json()
    assert page == {"items": [], "next": None}
    assert fake_agent.get("/v1/vms", params={"limit": 0}).status_code == 422
