"""Typed HTTP client for an agent's API, as the backend calls it: every request signed by
the backend's sr25519 key and addressed (audience) to one host, every answer checked to be
signed by that host's key and bound to the request's nonce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from substrateinterface import Keypair

from kumulus.backend import schemas as s
from kumulus.core import log_times, request_ids
from kumulus.core.http import parse_error
from kumulus.core.log_times import LogChunk
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
        self,
        detail: str,
        status: int | None,
        code: str = "unreachable",
        retry: bool = True,
        fields: list[Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.retry = retry
        self.fields = fields

    @classmethod
    def of(cls, resp: httpx.Response) -> ApiError:
        detail, code, retry = parse_error(resp)
        try:
            fields = resp.json().get("fields")
        except (ValueError, AttributeError):
            fields = None
        return cls(
            detail, resp.status_code, code, retry, fields if isinstance(fields, list) else None
        )

    def body(self) -> dict[str, Any]:
        """The error as the API's error body (`detail`, `code`, `retry`, `fields` when the
        API sent some), with `status` (null: the API was not reached)."""
        out: dict[str, Any] = {"detail": self.detail, "code": self.code, "retry": self.retry}
        if self.fields is not None:
            out["fields"] = self.fields
        return {**out, "status": self.status}


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
        return self.logs_since(vm_id, tail, None).text

    def logs_since(self, vm_id: str, tail: int, since: str | None) -> LogChunk:
        """The VM's last `tail` console lines after the marker `since` (None: all) and
        the marker of the last (None from an agent that sends none)."""
        query = f"?tail={int(tail)}" + (f"&since={since}" if since else "")
        answer = self._call("GET", f"/v1/vms/{vm_id}/logs{query}")
        if not isinstance(answer, dict) or not isinstance(answer.get("logs"), str):
            raise ApiError("the agent's answer has no logs", 200, "bad_answer", retry=True)
        until = answer.get("until")
        # Relayed to the developer as they are (lines, their programs' colours): the CLI
        # shows control characters as '?', the console escapes HTML. Only bounded here.
        return LogChunk(
            str(answer["logs"])[-MAX_LOGS:],
            until if isinstance(until, str) and log_times.is_marker(until) else None,
        )


def _field_name(loc: tuple[int | str, ...]) -> str:
    # An unknown field's name is the sender's text too: letters, digits, '_' and '.' only.
    text = ".".join(str(part) for part in loc)
    name = "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in "._"))
    return name[:60] or "answer"


M = TypeVar("M", bound=BaseModel)


@cache
def _lenient(model: type[M]) -> type[M]:
    # The shared schemas forbid unknown fields (right for requests); an answer from a newer
    # backend may carry more, which this client does not need to refuse.
    config = {"model_config": ConfigDict(extra="ignore"), "__module__": model.__module__}
    lenient: type[M] = type(model.__name__, (model,), config)
    return lenient


def _parse(model: type[M], data: Any) -> M:
    try:
        # Strict: a `true` is not a port, nor "22" a number (JSON mode: times from text).
        return cast(M, _lenient(model).model_validate_json(json.dumps(data), strict=True))
    except ValidationError as exc:
        raise ApiError(
            f"the backend's answer is not a {model.__name__} (wrong: "
            + ", ".join(_field_name(e["loc"]) for e in exc.errors(include_input=False)[:4])
            + ")",
            200,
            "bad_answer",
            retry=False,
        ) from exc


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class BackendClient:
    """The developer/provider API as the CLI uses it (bearer API token). Each method is
    one API call (lists: every page, following the `next` cursors) and returns the
    backend's schema models; any refusal or failure to reach it is an ApiError."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def __enter__(self) -> BackendClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        try:
            resp = self._http.request(method, path, json=body, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self._http.base_url}: {exc}", None) from exc
        if resp.status_code >= 400:
            raise ApiError.of(resp)
        try:
            return resp.json() if resp.content else None
        except ValueError as exc:
            raise ApiError("the backend answered something that is not JSON", resp.status_code,
                           "bad_answer", retry=True) from exc  # fmt: skip

    def list_all(self, path: str, page_size: int = 200, max_pages: int = 1000) -> list[Any]:
        """Every item of a paged list endpoint ({"items", "next"}), following its cursors;
        ApiError if the server repeats a cursor or the list never ends."""
        items: list[Any] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            params: dict[str, Any] = {"limit": page_size}
            if after:
                params["after"] = after
            page = self.call("GET", path, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ApiError(f"{path}: the answer is not a page", 200, "bad_answer", False)
            items.extend(page["items"])
            after = page.get("next")
            if not after:
                return items
            if after in seen:
                raise ApiError(f"{path}: the server repeated a page cursor", 200, "bad_answer")
            seen.add(after)
        raise ApiError(f"{path}: more than {max_pages} pages", 200, "bad_answer")

    def _list(self, model: type[M], path: str) -> list[M]:
        return [_parse(model, item) for item in self.list_all(path)]

    # -- account ----------------------------------------------------------------------

    def signup(self, email: str, password: str, role: str) -> s.AccountPublic:
        body = {"email": email, "password": password, "role": role}
        return _parse(s.AccountPublic, self.call("POST", "/v1/auth/signup", body))

    def login(
        self,
        email: str,
        password: str,
        token_name: str = "cli",  # noqa: S107 (a name)
    ) -> s.LoginResponse:
        body = {"email": email, "password": password, "tokenName": token_name}
        return _parse(s.LoginResponse, self.call("POST", "/v1/auth/login", body))

    def me(self) -> s.AccountPublic:
        return _parse(s.AccountPublic, self.call("GET", "/v1/me"))

    def tokens(self) -> list[s.TokenPublic]:
        return self._list(s.TokenPublic, "/v1/tokens")

    def create_token(self, name: str) -> s.TokenCreated:
        return _parse(s.TokenCreated, self.call("POST", "/v1/tokens", {"name": name}))

    def revoke_token(self, token_id: int) -> None:
        self.call("DELETE", f"/v1/tokens/{int(token_id)}")

    def billing(self) -> s.BillingOut:
        return _parse(s.BillingOut, self.call("GET", "/v1/billing"))

    def deposit_info(self) -> s.DepositInfo:
        return _parse(s.DepositInfo, self.call("GET", "/v1/billing/deposit-info"))

    def wallets(self) -> list[s.WalletOut]:
        return self._list(s.WalletOut, "/v1/wallets")

    # -- developer --------------------------------------------------------------------

    def ssh_keys(self) -> list[s.SshKeyOut]:
        return self._list(s.SshKeyOut, "/v1/ssh-keys")

    def add_ssh_key(self, name: str, public_key: str) -> s.SshKeyOut:
        body = {"name": name, "publicKey": public_key}
        return _parse(s.SshKeyOut, self.call("POST", "/v1/ssh-keys", body))

    def delete_ssh_key(self, key_id: int) -> None:
        self.call("DELETE", f"/v1/ssh-keys/{int(key_id)}")

    def quote(self, want: s.VMQuoteIn) -> s.VMQuoteOut:
        return _parse(s.VMQuoteOut, self.call("POST", "/v1/vms/quote", _body(want)))

    def create_vm(self, want: s.VMCreateIn, idempotency_key: str) -> s.VMOut:
        """Create a VM; the same `idempotency_key` again answers the VM it made (so a retry
        after a lost answer never makes two)."""
        headers = {"Idempotency-Key": idempotency_key}
        return _parse(s.VMOut, self.call("POST", "/v1/vms", _body(want), headers=headers))

    def vms(self) -> list[s.VMOut]:
        return self._list(s.VMOut, "/v1/vms")

    def vm(self, vm_id: str) -> s.VMOut:
        return _parse(s.VMOut, self.call("GET", f"/v1/vms/{_segment(vm_id)}"))

    def start_vm(self, vm_id: str) -> s.VMOut:
        return _parse(s.VMOut, self.call("POST", f"/v1/vms/{_segment(vm_id)}/start"))

    def stop_vm(self, vm_id: str) -> s.VMOut:
        return _parse(s.VMOut, self.call("POST", f"/v1/vms/{_segment(vm_id)}/stop"))

    def delete_vm(self, vm_id: str) -> s.VMOut | None:
        """None once deleted; the VM (`deleting`) while its host has not confirmed."""
        answer = self.call("DELETE", f"/v1/vms/{_segment(vm_id)}")
        return _parse(s.VMOut, answer) if answer else None

    def vm_logs(self, vm_id: str, tail: int = 200, since: str | None = None) -> s.VMLogsOut:
        params: dict[str, Any] = {"tail": tail}
        if since:
            params["since"] = since
        path = f"/v1/vms/{_segment(vm_id)}/logs"
        return _parse(s.VMLogsOut, self.call("GET", path, params=params))

    # -- provider ---------------------------------------------------------------------

    def hosts(self) -> list[s.HostPublic]:
        return self._list(s.HostPublic, "/v1/provider/hosts")

    def host(self, host_id: str) -> s.HostPublic:
        return _parse(s.HostPublic, self.call("GET", f"/v1/provider/hosts/{_segment(host_id)}"))

    def update_host(self, host_id: str, change: s.HostUpdate) -> s.HostPublic:
        path = f"/v1/provider/hosts/{_segment(host_id)}"
        return _parse(s.HostPublic, self.call("PATCH", path, _body(change)))

    def payouts(self) -> list[s.PayoutOut]:
        return self._list(s.PayoutOut, "/v1/provider/payouts")

    def request_payout(self, amount: str | None) -> s.PayoutOut:
        body = _body(s.PayoutIn(amount=amount))
        return _parse(s.PayoutOut, self.call("POST", "/v1/provider/payouts", body))

    # -- anchors ----------------------------------------------------------------------

    def my_anchored_records(self) -> list[s.AnchoredRecordOut]:
        return self._list(s.AnchoredRecordOut, "/v1/anchors/mine")

    def anchor_proof(self, anchor_id: int, index: int) -> dict[str, Any]:
        """The proof document `kumulus verify` checks (chain/verify.py)."""
        answer = self.call("GET", f"/v1/anchors/{int(anchor_id)}/proofs/{int(index)}")
        if not isinstance(answer, dict):
            raise ApiError("the backend's proof is not a document", 200, "bad_answer", False)
        return answer


def _segment(value: str) -> str:
    # An id typed by a person becomes one path segment, never more path or a query.
    return quote(str(value), safe="")
