"""Log-in and sign-up behind their rate limits: what the API routes and the console forms
both call, so neither door is cheaper for a password guesser than the other.

Order matters: the limits are counted before any password is hashed (a refused attempt
costs no argon2), and hashing itself is bounded per process (backend/security.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kumulus.backend import accounts
from kumulus.backend.models import Account
from kumulus.backend.rate_limits import RateLimits
from kumulus.backend.schemas import SignupRequest
from kumulus.config import BackendSettings
from kumulus.core.errors import UnauthorizedError


def log_in(db: Session, limits: RateLimits, ip: str, email: str, password: str) -> Account:
    """The account with this email and password. RateLimitedError (429) when this IP or
    this account is over its limit, UnauthorizedError (401) for wrong credentials, which
    count against the account named."""
    email = email.strip().lower()
    limits.login_attempt(ip, email)
    try:
        return accounts.authenticate(db, email, password)
    except UnauthorizedError:
        limits.login_failed(email)
        raise


def sign_up(
    db: Session, settings: BackendSettings, limits: RateLimits, ip: str, body: SignupRequest
) -> Account:
    """A new account (accounts.signup) unless this IP or this email is over its limit."""
    limits.signup_attempt(ip, body.email)
    return accounts.signup(db, settings, body)
