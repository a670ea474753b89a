"""The one error family every Kumulus service raises.

Services (backend and agent) raise a `KumulusError` subclass; each app turns it into an
HTTP answer in one place (`kumulus.core.http.install_error_handlers`), the consoles into a
message on the page. Callers decide from `code` and `retry`, never from the text:
`retry` says whether the same request may succeed later unchanged (a host that is away, a
database that is busy), as opposed to a request that must change first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one input field: `loc` is its path ("body", "prices", "cpu")."""

    loc: tuple[str | int, ...]
    msg: str


class KumulusError(Exception):
    """Base of the family. Subclasses fix `code` (stable, machine-readable, snake_case)
    and the default `retry`; `detail` is one sentence a person can act on."""

    code: ClassVar[str] = "error"
    retry_default: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        retry: bool | None = None,
        fields: Sequence[FieldProblem] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_code = code or self.code
        self.retry = self.retry_default if retry is None else retry
        self.fields = list(fields) if fields is not None else None
        # Seconds after which the same request may succeed (HTTP `Retry-After`).
        self.retry_after = retry_after


class InvalidError(KumulusError):
    """The request itself is wrong (a value out of bounds, a malformed field)."""

    code = "invalid"


class UnauthorizedError(KumulusError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    code = "unauthorized"


class ForbiddenError(KumulusError):
    """Authenticated, but this account may not do this."""

    code = "forbidden"


class NotFoundError(KumulusError):
    """No such thing, or not yours (the two are not told apart)."""

    code = "not_found"


class ConflictError(KumulusError):
    """The thing is in a state that does not allow this (exists already, being deleted,
    nothing fits)."""

    code = "conflict"


class PaymentRequiredError(KumulusError):
    """The balance does not cover this."""

    code = "payment_required"


class TooLargeError(KumulusError):
    """The request body is larger than this endpoint takes."""

    code = "too_large"


class RateLimitedError(KumulusError):
    """Too many requests of this kind from this caller for now; `retry_after` says when
    the next one is accepted."""

    code = "rate_limited"
    retry_default = True


class UnavailableError(KumulusError):
    """Something we depend on is away for now (a host offline, the chain, the engine)."""

    code = "unavailable"
    retry_default = True


class UpstreamError(KumulusError):
    """Another party answered wrongly or refused (a provider's agent, the chain)."""

    code = "upstream"


class InternalError(KumulusError):
    """A bug of ours; the detail never carries internals."""

    code = "internal"
    retry_default = True
