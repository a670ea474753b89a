"""Both OpenAPI documents declare the ErrorBody for every error answer and the page shape
for every list, so clients (and schema fuzzers) can rely on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _check(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 shape is gone
    assert set(schemas["ErrorBody"]["properties"]) == {"detail", "code", "retry", "fields"}
    for path, method, op in _operations(doc):
        errors = [s for s in op["responses"] if not s.startswith(("2", "3"))]
        assert "5XX" in errors and "4XX" not in errors, (path, method, errors)
        for status in errors:
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (path, method, status)
        # Declared from the route: a path id can name nothing, a body be invalid or large.
        if "{" in path:
            assert {"404", "422"} <= set(errors), (path, method, errors)
        if "requestBody" in op:
            assert {"413", "422"} <= set(errors), (path, method, errors)
        ok = next(r for s, r in op["responses"].items() if s.startswith("2"))
        schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
        if method == "get" and schema.get("type") == "array":
            raise AssertionError(f"{path} answers a bare array, not a page")
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        if name.startswith("Page_"):
            assert set(schemas[name]["properties"]) == {"items", "next"}
            params = {p["name"] for p in op.get("parameters", [])}
            assert {"limit", "after"} <= params, path


def test_backend_openapi(tmp_path: Path) -> None:
    settings = BackendSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/k.db")
    _check(create_app(settings).openapi())


def test_agent_openapi(fake_agent: TestClient) -> None:
    doc = fake_agent.get("/openapi.json").json()
    _check(doc)
    pages = [p for p, m, op in _operations(doc) if "Page_" in str(op["responses"])]
    assert "/v1/vms" in pages


def test_auth_dependencies_declare_401_and_roles_403(tmp_path: Path) -> None:
    settings = BackendSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/k.db")
    paths = create_app(settings).openapi()["paths"]
    assert {"401", "403", "404", "422"} <= set(paths["/v1/vms/{vm_id}"]["get"]["responses"])
    assert "403" not in paths["/v1/me"]["get"]["responses"]  # either role may ask
    assert {"401", "413", "422"} <= set(paths["/v1/auth/login"]["post"]["responses"])
    assert {"409"} <= set(paths["/v1/auth/signup"]["post"]["responses"])
    assert "401" not in paths["/healthz"]["get"]["responses"]
