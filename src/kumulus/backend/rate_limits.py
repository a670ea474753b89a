"""The backend's rate limits (the `limits` library), one `RateLimits` per app.

Two kinds of counting, chosen per limit (docs/architecture.md, decisions):
- per client IP, per API token and per host: a moving window in this process's memory
  (`limits`' MemoryStorage, without its expiry threads: backend/memory_counters.py).
  Cheap (no database write per request) and exact per process;
  N replicas behind a balancer allow up to N times the rate, which is what an IP or token
  limit is for (keeping one caller from taking a process).
- per account (the email a log-in or sign-up names): a fixed window in the database
  (`rate_counters.DatabaseStorage`), so every replica counts against the same budget and
  a password guesser gains nothing by spreading over replicas.

Every refusal is a `RateLimitedError` (429) whose `retry_after` is when the window lets
the next request through. The dependencies that enforce limits are marked with 429
(`core/access.py`), so every operation that can answer it declares it in the OpenAPI."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from kumulus.backend.client_ip import client_ip, limit_key, parse_networks
from kumulus.backend.db import Database
from kumulus.backend.memory_counters import LazyExpiryMemoryStorage
from kumulus.backend.rate_counters import DatabaseStorage
from kumulus.config import BackendSettings
from kumulus.core.access import marked
from kumulus.core.errors import RateLimitedError, UnavailableError


class RateLimits:
    """The limits of one backend app. Each method counts one request of its kind and
    raises `RateLimitedError` when it is over the limit (the request then does nothing)."""

    def __init__(self, settings: BackendSettings, db: Database) -> None:
        self._proxies = parse_networks(settings.trusted_proxies)
        self._local = MovingWindowRateLimiter(LazyExpiryMemoryStorage())
        self._shared = FixedWindowRateLimiter(DatabaseStorage(db))
        self._login_ip = parse(settings.login_rate_per_ip)
        self._login_failures = parse(settings.login_failures_per_account)
        self._signup_ip = parse(settings.signup_rate_per_ip)
        self._signup_account = parse(settings.signup_rate_per_account)
        self._api_token = parse(settings.api_rate_per_token)
        self._heartbeat_host = parse(settings.heartbeat_rate_per_host)
        self._heartbeat_ip = parse(settings.heartbeat_rate_per_ip)

    def client_ip(self, request: Request) -> str:
        return client_ip(request, self._proxies)

    def login_attempt(self, ip: str, email: str) -> None:
        """Before a log-in's password is checked: every attempt counts against its IP;
        an account that had too many failures refuses attempts until its window ends."""
        self._hit(
            self._local, self._login_ip, ("login-ip", limit_key(ip)), "log-ins from your address"
        )
        self.password_attempt(email)

    def password_attempt(self, email: str) -> None:
        """Before the password of the account `email` is checked (a log-in, or a session
        confirming it): refused while the account is over its failure budget, so a stolen
        session guesses no faster than a stranger at the log-in form."""
        if not self._counted(lambda: self._shared.test(self._login_failures, "login-fail", email)):
            raise self._refusal(
                self._shared, self._login_failures, ("login-fail", email),
                "failed log-ins for this account",
            )  # fmt: skip

    def login_failed(self, email: str) -> None:
        """A log-in named `email` and failed, or a wrong password was given for it
        (counted whether or not the account exists, so the answers tell nobody which
        emails have one)."""
        self._counted(lambda: self._shared.hit(self._login_failures, "login-fail", email))

    def signup_attempt(self, ip: str, email: str) -> None:
        self._hit(
            self._local, self._signup_ip, ("signup-ip", limit_key(ip)), "sign-ups from your address"
        )
        self._hit(self._shared, self._signup_account, ("signup", email), "sign-ups for this email")

    def api_call(self, token_id: int) -> None:
        self._hit(self._local, self._api_token, ("token", str(token_id)), "calls with this token")

    def heartbeat_from(self, ip: str) -> None:
        """Before a heartbeat's signature is checked: its signer and host id are the
        sender's to choose (any made-up key has a budget of its own), its address is not."""
        self._hit(
            self._local, self._heartbeat_ip, ("heartbeat-ip", limit_key(ip)),
            "heartbeats from your address",
        )  # fmt: skip

    def heartbeat(self, signer: str, host_id: str) -> None:
        self._hit(
            self._local, self._heartbeat_host, ("heartbeat", signer, host_id),
            "heartbeats from this host",
        )  # fmt: skip

    def _hit(
        self, limiter: RateLimiter, item: RateLimitItem, key: tuple[str, ...], what: str
    ) -> None:
        if not self._counted(lambda: limiter.hit(item, *key)):
            raise self._refusal(limiter, item, key, what)

    def _refusal(
        self, limiter: RateLimiter, item: RateLimitItem, key: tuple[str, ...], what: str
    ) -> RateLimitedError:
        stats = self._counted(lambda: limiter.get_window_stats(item, *key))
        wait = max(1.0, stats.reset_time - time.time())
        return RateLimitedError(
            f"too many {what}: at most {_spelled(item)}; retry in {int(wait + 0.999)} s",
            retry_after=wait,
        )

    @staticmethod
    def _counted(count: Callable[[], Any]) -> Any:
        try:
            return count()
        except StorageError as exc:  # the database, for the shared counters
            raise UnavailableError(
                "could not count this request against its limits; retry", retry_after=5
            ) from exc


def _spelled(item: RateLimitItem) -> str:
    """'10 per 15 minutes', '30 per minute'."""
    unit = item.GRANULARITY.name
    if item.multiples == 1:
        return f"{item.amount} per {unit}"
    return f"{item.amount} per {item.multiples} {unit}s"


@marked(statuses=(429,))
def get_rate_limits(request: Request) -> RateLimits:
    """Dependency of the operations that are rate limited (other than through the API
    token, `deps.current_token`): its mark makes their OpenAPI declare 429."""
    limits: RateLimits = request.app.state.rate_limits
    return limits
