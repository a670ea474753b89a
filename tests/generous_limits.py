"""Limits for tests whose subject is not a limit: many tests sign up and log in many
accounts from one address, and poll with one token (a test of a limit sets its own)."""

from __future__ import annotations

from typing import Any

GENEROUS_LIMITS: dict[str, Any] = {
    "login_rate_per_ip": "100000/minute",
    "login_failures_per_account": "100000/minute",
    "signup_rate_per_ip": "100000/minute",
    "signup_rate_per_account": "100000/minute",
    "api_rate_per_token": "1000000/minute",
    "heartbeat_rate_per_host": "1000000/minute",
    "heartbeat_rate_per_ip": "1000000/minute",
    "password_hash_concurrency": 64,
    "password_hash_wait": 30,
}
