"""Host keys: each host signs with a key of its own, which the provider's wallet delegates
(host id, host key, expiry) and can revoke; the wallet itself never lives on a host.

The backend trusts a host key only through the chain wallet -> delegation -> host key: the
delegation must be signed by the wallet linked to the provider now (re-linking a wallet
revokes every delegation), for the key the host registered with its one-time token, and
made after that wallet was linked (the text says when it was made). Hosts registered before
host keys ("legacy") go on signing with the wallet until their next setup run delegates a
key; no new host registers so. Raises the error family.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Account, Host, ProviderProfile
from kumulus.backend.schemas import DelegationOut, HostKeyOut
from kumulus.core.delegation import default_expiry, delegation_text, parse_delegation
from kumulus.core.errors import ConflictError, InvalidError, NotFoundError, UnauthorizedError
from kumulus.core.signing import SignatureError, verify_delegation

LEGACY, PENDING, DELEGATED, REVOKED = "legacy", "pending", "delegated", "revoked"
# A delegation longer than this is refused: an expiry bounds how long a forgotten host
# key could speak for the wallet.
MAX_DELEGATION = timedelta(days=2 * 366)
# A delegation is sent right after it is made (setup, `kumulus agent delegate`, the
# console): an older text is refused, which bounds how long one someone saw can be replayed.
MAX_DELEGATION_AGE = timedelta(days=1)


def speaks(state: str, delegated_until: datetime | None, now: datetime) -> bool:
    """Whether a host in key state `state` is heard at `now` (its heartbeats, address
    changes, answers): a legacy host (by its wallet), or a key under a standing delegation.
    A pending key (never delegated, or its delegation dropped by a wallet re-link) or an
    expired one speaks for nothing: a key taken with its host must not keep the host
    online, and its VMs billed, once no wallet stands behind it."""
    if state == LEGACY:
        return True
    return state == DELEGATED and delegated_until is not None and aware(delegated_until) > now


def signing_address(host: Host) -> str | None:
    """The key the host's heartbeats, stats and answers must be signed by, or None when
    nothing it signs is accepted now (its key is revoked, pending, or its delegation
    expired)."""
    if not speaks(host.host_key_state, host.delegated_until, utcnow()):
        return None
    return host.wallet_address if host.host_key_state == LEGACY else host.host_key


def schedulable(host: Host) -> bool:
    """Whether the host may take new VMs as far as its keys go (the scheduler's predicate)."""
    return speaks(host.host_key_state, host.delegated_until, utcnow())


def delegate(db: Session, message: str, signature: str, max_skew: float) -> Host:
    """Accept a delegation signed by the provider's wallet (raw or `<Bytes>`-wrapped) and
    make the host's key the one it signs with, until the expiry the text names (committed).
    For a legacy host it also sets the key (its setup run moving it off the wallet).

    The text must have been made within MAX_DELEGATION_AGE (and not later than `max_skew`
    seconds from now), and not before the wallet was last linked: a re-link revokes every
    delegation, and linking an earlier wallet back must not revive what it signed then."""
    try:
        said = parse_delegation(message)
    except SignatureError as exc:
        raise InvalidError(exc.reason) from exc
    now = utcnow()
    if not now < said.expires_at <= now + MAX_DELEGATION:
        raise InvalidError("a delegation must expire in the future and within two years")
    if said.issued_at > now + timedelta(seconds=max_skew):
        raise InvalidError(
            "this delegation says it was made in the future: check the clock where it was made"
        )
    if said.issued_at < now - MAX_DELEGATION_AGE:
        raise InvalidError(
            "this delegation was made more than a day ago: make a new one and send it at once "
            "(on the host: kumulus agent delegate)"
        )
    host = db.get(Host, said.host_id)
    profile = db.get(ProviderProfile, host.account_id) if host is not None else None
    if host is None or profile is None or profile.wallet_address is None:
        raise NotFoundError(f"no host {said.host_id}")
    try:
        verify_delegation(profile.wallet_address, message, signature)
    except SignatureError as exc:
        raise UnauthorizedError(
            f"delegation refused: {exc.reason} (it must be signed by the wallet linked now)",
            code="bad_signature",
        ) from exc
    # The text says when to the second; the link is kept to the microsecond.
    linked = profile.wallet_linked_at
    if linked is not None and said.issued_at < aware(linked).replace(microsecond=0):
        raise UnauthorizedError(
            "delegation refused: it was made before your wallet was last linked, which "
            "revoked it: make a new one (on the host: kumulus agent delegate)",
            code="stale_delegation",
        )
    if host.host_key_state == REVOKED:
        raise ConflictError("this host's key was revoked: set the host up again", code="revoked")
    # A host without a key of its own (legacy, or legacy cut off by a re-link) takes the
    # key the wallet names; any other keeps the key it registered with its token.
    if (
        host.host_key is not None
        and host.host_key_state != LEGACY
        and host.host_key != said.host_key
    ):
        raise ConflictError(
            f"host {host.id} registered key {host.host_key}, not {said.host_key}",
            code="wrong_host_key",
        )
    standing = host.delegated_until if host.host_key_state == DELEGATED else None
    if standing is not None and said.expires_at <= aware(standing):
        # Anyone may send a delegation they once saw: an older one must not cut a renewal
        # short. A provider who wants a key to stop sooner revokes it.
        raise ConflictError(
            "this host's key is delegated until later already: a renewal must expire later "
            "(to stop the key sooner, revoke it)",
            code="not_a_renewal",
        )
    host.host_key, host.host_key_state = said.host_key, DELEGATED
    host.wallet_address = profile.wallet_address
    host.delegation, host.delegation_signature = message, signature
    host.delegated_until = said.expires_at
    db.commit()
    return host


def revoke(db: Session, host: Host) -> Host:
    """Revoke the host's key for good (committed): its heartbeats and answers are refused
    and it takes no VMs; setting the host up again gives it a new key."""
    if host.host_key_state == LEGACY:
        raise ConflictError(
            "this host signs with your wallet (set up before host keys): run its setup "
            "again to give it a host key, or re-link another wallet",
            code="no_host_key",
        )
    host.host_key_state, host.delegated_until = REVOKED, None
    db.commit()
    return host


def revoke_delegations(db: Session, account: Account, wallet_address: str) -> None:
    """Drop every delegation of the provider's hosts (its wallet changed to
    `wallet_address`; flushed, not committed): they were signed by the old wallet. The host
    keys stay registered, pending a delegation by the new wallet. A `legacy` host signed
    with the old wallet itself, which lives on that host: it is cut off the same way,
    pending a key the new wallet delegates (`kumulus agent delegate` on the host)."""
    db.execute(
        update(Host)
        .where(Host.account_id == account.id, Host.host_key_state == DELEGATED)
        .values(host_key_state=PENDING, delegated_until=None, delegation=None,
                delegation_signature=None)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    # Re-linking is the remedy when a host (and so the wallet stored on it) was taken:
    # the old wallet must then speak for none of these hosts.
    db.execute(
        update(Host)
        .where(
            Host.account_id == account.id,
            Host.host_key_state == LEGACY,
            Host.wallet_address != wallet_address,
        )
        .values(host_key_state=PENDING, host_key=None)
        .execution_options(synchronize_session=False)
    )


def key_out(host: Host) -> HostKeyOut:
    return HostKeyOut(
        host_id=host.id,
        host_key=host.host_key,
        host_key_state=host.host_key_state,  # type: ignore[arg-type]
        delegated_until=aware(host.delegated_until) if host.delegated_until else None,
        schedulable=schedulable(host),
    )


def to_sign(host: Host) -> DelegationOut:
    """The host's key state and, for a key that may be delegated (pending, or delegated:
    renewing), the text the wallet signs: made now, expiring in a year. It is good for
    MAX_DELEGATION_AGE: the console and the API hand out a new one on every call."""
    message = None
    if host.host_key and host.host_key_state in (PENDING, DELEGATED):
        now = utcnow()
        message = delegation_text(host.id, host.host_key, default_expiry(now), issued_at=now)
    return DelegationOut(**key_out(host).model_dump(), message=message)
