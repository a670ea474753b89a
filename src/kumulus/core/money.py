"""Token amounts. Money is always an integer count of the chain's smallest unit (planck);
decimals and the symbol only matter where people read or type amounts."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from math import ceil

GIB = 1 << 30
SECONDS_PER_HOUR = 3600
# Ledger amounts are exact u128-capable numbers (backend/models.py Planck); prices are still
# stored in 64-bit columns (BIGINT), which the price bounds keep them under.
INT64_MAX = 2**63 - 1
# A sanity bound kept from the int64 ledger: a VM at the largest allowed price must be able
# to run a month (this many hours) without its charge reaching 64 bits (checked at start).
MAX_CHARGE_HOURS = 30 * 24


def largest_charge(price_per_hour: int) -> int:
    """The most one ledger entry of a VM costing at most `price_per_hour` can be (planck):
    a full span plus the sub-planck carry, with a margin for placement comparing prices in
    floating point (off by far less than a millionth)."""
    return (price_per_hour + price_per_hour // 10**6 + 2) * MAX_CHARGE_HOURS + 1


def parse_amount(text: str | int | float | Decimal, decimals: int) -> int:
    """ "0.25" tokens -> planck. Refuses negatives, NaN and more precision than the token has."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {str(text)[:40]!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError("an amount must be a finite number >= 0")
    planck = value.scaleb(decimals)
    if planck != planck.to_integral_value():
        raise ValueError(f"at most {decimals} decimal places")
    if planck > INT64_MAX:
        raise ValueError("amount too large")
    return int(planck)


def format_amount(planck: int, decimals: int, symbol: str = "") -> str:
    """planck -> "0.25 UNIT", without trailing zeros."""
    value = Decimal(planck).scaleb(-decimals)
    text = format(value.normalize(), "f") if planck else "0"
    return f"{text} {symbol}".rstrip()


# Pure, and called twice per VM per metering pass with the few shapes and prices in use:
# the exact Fraction arithmetic was a tenth of a pass's Python time.
@lru_cache(maxsize=4096)
def hourly_price(
    cpu: float, memory: int, disk: int, price_cpu: int, price_memory_gib: int, price_disk_gib: int
) -> int:
    """What a VM of this size pays per hour at these unit prices (planck, rounded up).
    Exact: `cpu` counts as the decimal it prints as, bytes / GiB as a fraction (a Decimal
    division rounds to 28 digits, enough to be off by one planck for odd sizes), so the
    scheduler's price comparisons and every charge agree to the planck."""
    total = Fraction(Decimal(str(cpu))) * price_cpu + Fraction(
        memory * price_memory_gib + disk * price_disk_gib, GIB
    )
    return ceil(total)


# The shape hosts are ranked by within a reputation tier: what one general-purpose VM
# (1 vCPU, 2 GiB memory, 20 GiB disk, the console's "Small" preset) costs per hour there.
# One stored, indexed number per host keeps placement a single index walk; a per-VM price
# would have to be computed and sorted over every fitting host. Whole units keep it an
# exact integer. A VM of another shape may find a host slightly cheaper for it further down
# the order; its own price is still computed exactly from the unit prices, and the quote
# shows exactly that price.
REFERENCE_VM = (1, 2, 20)  # vCPU, GiB memory, GiB disk


def reference_price(price_cpu: int, price_memory_gib: int, price_disk_gib: int) -> int:
    """The hourly price (planck) of REFERENCE_VM at these unit prices."""
    cpu, memory_gib, disk_gib = REFERENCE_VM
    return cpu * price_cpu + memory_gib * price_memory_gib + disk_gib * price_disk_gib
