"""Typed HTTP client for an agent's API, as the backend calls it: every request signed by
the backend's sr25519 key and addressed (audience) to one host, every answer checked to be
signed by that host's key and bound to the request's nonce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError
from substrateinterface import Keypair

from kumulus.core import request_ids
from kumulus.core.http import parse_error
from kumulus.core.public_dial import NotPublicError, PublicOnly, Resolver, resolve
from kumulus.core.schemas import VMPublic
from kumulus.core.signing import (
    HDR_ANSWER_SIGNATURE,
    HDR_NONCE,
    SignatureError,
    sign_request,
    verify_answer,
)
from kumulus.host_slots import HostBusyError, HostSlots


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


# Every backend -> agent call ends within this many seconds.
CALL_DEADLINE = 90.0
# Bytes of an agent's answer read at most (logs are the largest: MAX_LOGS characters).
MAX_ANSWER_BYTES = 8 << 20
# Characters of a VM's logs passed on (the end is kept): 10,000 lines of 200.
MAX_LOGS = 2_000_000


@dataclass(frozen=True)
class CallPolicy:
    """How the backend calls agents (from its settings; see AgentClient): the total
    `deadline` of a call, the most of an answer read, whether private addresses may be
    dialled, and the process's per-host `slots` (None: unbounded)."""

    deadline: float = CALL_DEADLINE
    max_answer_bytes: int = MAX_ANSWER_BYTES
    allow_private: bool = False
    slots: HostSlots | None = None


class AgentClient:
    """One provider's agent, as the backend calls it, under `policy`. A provider is a
    stranger: every call ends within `policy.deadline` seconds whatever the agent does,
    waiting for a slot included (httpx's own timeouts are per read, which an agent
    trickling one byte at a time never trips); at most `policy.max_answer_bytes` of an
    answer are read (more: `bad_answer`); with `policy.slots`, at most `slots.per_host`
    calls run at once to this host in this process (the next waits `slots.wait` seconds,
    then fails as `host_busy`); and only public addresses are dialled
    (core/public_dial.py: checked on every connection against the address dialled;
    `private_address`) unless `policy.allow_private`. An answer that is not what the API
    promises is an ApiError (code `bad_answer`), never a crash. `deadline`, when given,
    overrides the policy's.

    Every answer, errors included, must be signed by `answer_address` (the host's signing
    key) over its status, body and this request's nonce; one that is not (unsigned, another
    key, another request's, tampered) is an ApiError with status None and code
    `bad_answer_signature`: a failed call like an unreachable host, never a refusal or a
    404 the caller could act on."""

    def __init__(
        self,
        base_url: str,
        host_id: str,
        keypair: Keypair,
        answer_address: str,
        policy: CallPolicy = CallPolicy(),
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        deadline: float | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.host_id = host_id
        self.keypair = keypair
        self.answer_address = answer_address
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._transport = transport
        self._deadline = policy.deadline if deadline is None else deadline
        self._allow_private = policy.allow_private
        self._max_answer_bytes = policy.max_answer_bytes
        self._slots = policy.slots
        self._resolver = resolver

    def close(self) -> None:
        """Nothing to release: each call has its own connection (see `_call`)."""

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        content = json.dumps(body).encode() if body is not None else b""
        # The request (or job run) this call serves, so both logs show the same id.
        request_id = request_ids.current()
        traced = {request_ids.HEADER: request_id} if request_id else {}
        with self._slot() as waited:
            signed = sign_request(self.keypair, method, path, content, audience=self.host_id)
            if body is not None:
                signed["Content-Type"] = "application/json"
            # Async only for its cancellation: a sync request blocked in a read cannot be
            # interrupted, a task can. Callers are plain threads (routes, jobs).
            resp = asyncio.run(
                self._request(
                    method,
                    path,
                    content,
                    {**signed, "Accept-Encoding": "identity", **traced, **(headers or {})},
                    self._deadline - waited,
                )
            )
        try:
            verify_answer(
                self.answer_address,
                resp.status_code,
                resp.content,
                signed[HDR_NONCE],
                resp.headers.get(HDR_ANSWER_SIGNATURE, ""),
            )
        except SignatureError as exc:
            raise ApiError(
                f"the host's answer ({resp.status_code}) is refused: {exc.reason}",
                None,
                "bad_answer_signature",
                retry=True,
            ) from exc
        if resp.status_code >= 400:
            raise ApiError.of(resp)
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError("the agent answered something that is not JSON", resp.status_code,
                           "bad_answer", True) from exc  # fmt: skip

    @contextmanager
    def _slot(self) -> Iterator[float]:
        if self._slots is None:
            yield 0.0
            return
        try:
            with self._slots.hold(self.host_id) as waited:
                yield waited
        except HostBusyError as exc:
            raise ApiError(f"{exc}; try again later", None, "host_busy", retry=True) from exc

    def _http(self) -> httpx.AsyncClient:
        transport = self._transport
        if not self._allow_private:
            transport = PublicOnly(transport, self._resolver)
        return httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout,
                                 transport=transport)  # fmt: skip

    async def _request(
        self, method: str, path: str, content: bytes, headers: dict[str, str], deadline: float
    ) -> httpx.Response:
        cap = self._max_answer_bytes
        try:
            async with asyncio.timeout(max(deadline, 0.0)), self._http() as http:
                request = http.build_request(method, path, content=content, headers=headers)
                resp = await http.send(request, stream=True)
                try:
                    if resp.headers.get("content-encoding", "identity") != "identity":
                        # Asked for identity: a compressed answer could inflate past the cap.
                        raise ApiError("the agent's answer is compressed", None, "bad_answer")
                    declared = resp.headers.get("content-length", "")
                    if declared.isascii() and declared.isdigit() and int(declared) > cap:
                        raise self._too_large(cap)
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():  # identity: the raw bytes
                        body += chunk
                        if len(body) > cap:
                            raise self._too_large(cap)
                finally:
                    await resp.aclose()
                return httpx.Response(
                    resp.status_code, headers=resp.headers, content=bytes(body), request=request
                )
        except TimeoutError as exc:
            raise ApiError(f"agent did not answer within {self._deadline:g} s", None) from exc
        except NotPublicError as exc:
            raise ApiError(
                f"the agent's address is refused: {exc}", None, "private_address", retry=True
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"agent unreachable: {type(exc).__name__}", None) from exc

    @staticmethod
    def _too_large(cap: int) -> ApiError:
        return ApiError(
            f"the agent's answer is larger than {cap} bytes: refused", None, "bad_answer"
        )

    @staticmethod
    def _vm(answer: Any) -> VMPublic:
        """The answer as a VM, every field checked (the host key parsed, its fingerprint
        matching), or ApiError `bad_answer` saying which fields are wrong (never their
        values: they are the provider's text)."""
        try:
            return VMPublic.model_validate(answer)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_field_name(error['loc'])}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)[:3]
            )
            raise ApiError(
                f"the agent's answer is not a VM ({problems})", 200, "bad_answer", retry=True
            ) from exc

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> VMPublic:
        return self._vm(self._call("POST", "/v1/vms", body, {"Idempotency-Key": idempotency_key}))

    def get_vm(self, vm_id: str) -> VMPublic:
        return self._vm(self._call("GET", f"/v1/vms/{vm_id}"))

    def start_vm(self, vm_id: str) -> VMPublic:
        return self._vm(self._call("POST", f"/v1/vms/{vm_id}/start"))

    def stop_vm(self, vm_id: str) -> VMPublic:
        return self._vm(self._call("POST", f"/v1/vms/{vm_id}/stop"))

    def delete_vm(self, vm_id: str) -> None:
        self._call("DELETE", f"/v1/vms/{vm_id}")

    def logs(self, vm_id: str, tail: int = 200) -> str:
        answer = self._call("GET", f"/v1/vms/{vm_id}/logs?tail={tail}")
        if not isinstance(answer, dict) or not isinstance(answer.get("logs"), str):
            raise ApiError("the agent's answer has no logs", 200, "bad_answer", retry=True)
        # Relayed to the developer as they are (lines, their programs' colours): the CLI
        # shows control characters as '?', the console escapes HTML. Only bounded here.
        return str(answer["logs"])[-MAX_LOGS:]


def _field_name(loc: tuple[int | str, ...]) -> str:
    # An unknown field's name is the sender's text too: letters, digits, '_' and '.' only.
    text = ".".join(str(part) for part in loc)
    name = "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in "._"))
    return name[:60] or "answer"


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

    def list_all(self, path: str, page_size: int = 200, max_pages: int = 1000) -> list[Any]:
        """Every item of a paged list endpoint ({"items", "next"}), following its cursors;
        ApiError if the server repeats a cursor or the list never ends."""
        items: list[Any] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            query = f"limit={page_size}" + (f"&after={after}" if after else "")
            sep = "&" if "?" in path else "?"
            page = self.call("GET", f"{path}{sep}{query}")
            items.extend(page["items"])
            after = page.get("next")
            if not after:
                return items
            if after in seen:
                raise ApiError(f"{path}: the server repeated a page cursor", 200, "bad_answer")
            seen.add(after)
        raise ApiError(f"{path}: more than {max_pages} pages", 200, "bad_answer")
