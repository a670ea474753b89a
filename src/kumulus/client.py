"""Typed HTTP client for an agent's API, as the backend calls it: every request signed by
the backend's sr25519 key and addressed (audience) to one host."""

from __future__ import annotations

import json
from typing import Any

import httpx
from substrateinterface import Keypair

from kumulus.core.http import parse_error
from kumulus.core.schemas import VMPublic
from kumulus.core.signing import sign_request


class ApiError(Exception):
    """An API (the backend, or an agent) refused with its error body (`status`, `code`,
    `detail`, `retry`), or could not be reached (`status` None, code "unreachable",
    retry True: trying again, or elsewhere, may help)."""

    def __init__(
        self, detail: str, status: int | None, code: str = "unreachable", retry: bool = True
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.retry = retry

    @classmethod
    def of(cls, resp: httpx.Response) -> ApiError:
        detail, code, retry = parse_error(resp)
        return cls(detail, resp.status_code, code, retry)


class AgentClient:
    def __init__(
        self,
        base_url: str,
        host_id: str,
        keypair: Keypair,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.host_id = host_id
        self.keypair = keypair
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        content = json.dumps(body).encode() if body is not None else b""
        signed = sign_request(self.keypair, method, path, content, audience=self.host_id)
        if body is not None:
            signed["Content-Type"] = "application/json"
        try:
            resp = self._http.request(
                method, path, content=content, headers={**signed, **(headers or {})}
            )
        except httpx.HTTPError as exc:
            raise ApiError(f"agent unreachable: {type(exc).__name__}", None) from exc
        if resp.status_code >= 400:
            raise ApiError.of(resp)
        return resp.json()

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> VMPublic:
        return VMPublic.model_validate(
            self._call("POST", "/v1/vms", body, {"Idempotency-Key": idempotency_key})
        )

    def get_vm(self, vm_id: str) -> VMPublic:
        return VMPublic.model_validate(self._call("GET", f"/v1/vms/{vm_id}"))

    def start_vm(self, vm_id: str) -> VMPublic:
        return VMPublic.model_validate(self._call("POST", f"/v1/vms/{vm_id}/start"))

    def stop_vm(self, vm_id: str) -> VMPublic:
        return VMPublic.model_validate(self._call("POST", f"/v1/vms/{vm_id}/stop"))

    def delete_vm(self, vm_id: str) -> None:
        self._call("DELETE", f"/v1/vms/{vm_id}")

    def logs(self, vm_id: str, tail: int = 200) -> str:
        return str(self._call("GET", f"/v1/vms/{vm_id}/logs?tail={tail}")["logs"])


class BackendClient:
    """The developer/provider API as the CLI uses it (bearer API token)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        try:
            resp = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self._http.base_url}: {exc}", None) from exc
        if resp.status_code >= 400:
            raise ApiError.of(resp)
        return resp.json() if resp.content else None

    def list_all(self, path: str, page_size: int = 200) -> list[Any]:
        """Every item of a paged list endpoint ({"items", "next"}), following its cursors."""
        items: list[Any] = []
        after: str | None = None
        while True:
            query = f"limit={page_size}" + (f"&after={after}" if after else "")
            sep = "&" if "?" in path else "?"
            page = self.call("GET", f"{path}{sep}{query}")
            items.extend(page["items"])
            after = page.get("next")
            if not after:
                return items
