"""Where a provider's payouts go: the linked wallet, once its cool-down is over.

Replacing a linked wallet needs the account's password and starts a cool-down
(`settings.wallet_cooldown`, 24 h by default; `providers.link_wallet`). Until it ends no
payout is made at all: not to the new wallet (a stolen session plus a stolen password
would otherwise redirect the earnings at once), and not to the old one either (a
provider replaces a wallet because its key leaked or was lost more often than not, and
paying it would hand the earnings to whoever holds that key). Earnings stay on the
provider's ledger account meanwhile, nothing is lost, and payouts pending at the re-link
are cancelled and refunded, so everything goes to the new wallet once the cool-down ends.
The console and `GET /v1/provider/profile` (`walletPayoutsFrom`) show when that is."""

from __future__ import annotations

from datetime import datetime, timedelta

from kumulus.backend.clock import aware
from kumulus.backend.models import ProviderProfile
from kumulus.core.errors import ConflictError


def payouts_from(profile: ProviderProfile | None, now: datetime) -> datetime | None:
    """When payouts to the linked wallet may start, if that is after `now`; None when
    they may go now (or when no wallet is linked)."""
    if profile is None or profile.wallet_address is None or profile.wallet_payouts_from is None:
        return None
    start = aware(profile.wallet_payouts_from)
    return start if start > now else None


def payout_address(profile: ProviderProfile | None, now: datetime) -> str:
    """The wallet a payout may go to at `now`; ConflictError `no_wallet` without one and
    `wallet_cooldown` while a replaced wallet's cool-down runs."""
    if profile is None or profile.wallet_address is None:
        raise ConflictError("link a wallet first: payouts go to it", code="no_wallet")
    start = payouts_from(profile, now)
    if start is not None:
        raise ConflictError(
            f"payouts are paused until {start:%Y-%m-%d %H:%M} UTC: the payout wallet was "
            "replaced, and a new wallet receives payouts only after a cool-down (your "
            "earnings are kept and paid to it then)",
            code="wallet_cooldown",
        )
    return profile.wallet_address


def link(profile: ProviderProfile, address: str, now: datetime, cooldown: timedelta) -> bool:
    """Record `address` as the profile's wallet from `now` (no flush). A first wallet, or
    the same one again, pays out at once; another one replacing a linked wallet only after
    `cooldown`. Returns whether a cool-down started."""
    replacing = profile.wallet_address is not None and profile.wallet_address != address
    # Every link, of the same wallet too, revokes the host key delegations made before it
    # (host_keys.revoke_delegations); `delegate` refuses texts made before this moment.
    profile.wallet_linked_at = now
    profile.wallet_address = address
    if replacing and cooldown > timedelta(0):
        profile.wallet_payouts_from = now + cooldown
        return True
    if replacing:
        profile.wallet_payouts_from = None
    return False
