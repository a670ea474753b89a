"""One-time host tokens carry the backend's key: `kmh_<backend ss58 address>_<secret>`.

The token reaches the new host out of band (the provider copies the setup command from the
console), so the backend key in it is one the agent can pin without trusting whatever
answers its registration: a man in the middle of that answer cannot swap in their own key.
"""

from __future__ import annotations

from kumulus.core.signing import SignatureError, public_key_of

PREFIX = "kmh"


def host_token_kind(backend_address: str) -> str:
    """The prefix of a new host token issued by the backend whose key is `backend_address`
    (the random secret follows it, after `_`)."""
    return f"{PREFIX}_{backend_address}"


def backend_address_in(token: str) -> str | None:
    """The backend address a host token carries, or None for a token without one (issued
    before tokens carried it, or not a host token). ss58 addresses have no `_`."""
    prefix, _, rest = token.partition("_")
    address, sep, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not secret:
        return None
    try:
        public_key_of(address)
    except SignatureError:
        return None
    return address
