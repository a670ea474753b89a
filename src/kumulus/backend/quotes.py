"""Quotes: what a VM would pay per hour if created now, and the maxPricePerHour a client
sends with the create so the VM is placed at about that price or not at all.

The quote is the price of the host the scheduler would choose (scheduler.quote runs the
placement's own predicate and order without reserving), computed exactly from its unit
prices as every charge is; so the price shown is the price charged, unless another
placement takes that host first. The tolerance (`quote_tolerance_bps`) absorbs such small
moves; a larger one is a 409 that says the new price."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kumulus.backend.hosts import bounded_planck
from kumulus.backend.scheduler import Want, explain, quote
from kumulus.backend.schemas import VMQuoteIn, VMQuoteOut
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError
from kumulus.core.money import format_amount


def with_tolerance(settings: BackendSettings, price_hour: int) -> int:
    """The most a VM quoted at `price_hour` (planck) may be placed at: the quote plus the
    tolerance, rounded up, never above what one VM may cost at all."""
    bps = 10_000 + settings.quote_tolerance_bps
    return min(-(-price_hour * bps // 10_000), settings.max_vm_price_planck)


def quote_vm(db: Session, settings: BackendSettings, body: VMQuoteIn) -> VMQuoteOut:
    """The quote for `body`; ConflictError (409 `no_host_fits`, saying why) when no host
    would take the VM now, InvalidError (422) for a maximum over the platform's limit."""
    max_price = (
        None
        if body.max_price_per_hour is None
        else bounded_planck(
            settings, body.max_price_per_hour, "maxPricePerHour", settings.max_vm_price_planck
        )
    )
    want = Want(body.cpu, body.memory, body.disk, body.region, max_price, body.allow_weak_isolation)
    ttl, limit = settings.heartbeat_ttl, settings.max_vm_price_planck

    def money(planck: int) -> str:
        return format_amount(planck, settings.token_decimals, settings.token_symbol)

    found = quote(db, want, ttl, limit)
    if found is None:
        raise ConflictError(
            explain(db, want, ttl, money=money, price_limit=limit), code="no_host_fits"
        )
    return VMQuoteOut(
        price_per_hour=format_amount(found.price_hour, settings.token_decimals),
        host_id=found.host_id,
        max_price_per_hour=format_amount(
            with_tolerance(settings, found.price_hour), settings.token_decimals
        ),
        symbol=settings.token_symbol,
    )
