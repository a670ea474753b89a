"""Usage and balance (developers: ledger, deposits, wallets) and earnings (providers:
ledger, payouts), over the same functions as the billing API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from kumulus.backend import promo_payouts, settlement_state, statements, wallets
from kumulus.backend.deps import Db, Settings
from kumulus.backend.models import Account
from kumulus.backend.schemas import WalletLinkIn
from kumulus.backend.wallet_links import new_challenge
from kumulus.console.web import AnyAccount, Developer, Form, Provider, field_errors, render
from kumulus.core.errors import KumulusError
from kumulus.core.http import status_of

router = APIRouter(prefix="/console", include_in_schema=False)


def _page(
    request: Request,
    db: Db,
    settings: Settings,
    account: Account,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    settlement_on = getattr(request.app.state, "chain", None) is not None
    view = statements.statement(db, settings, account, settlement_on, 200)
    context: dict[str, Any] = {"title": "Billing", "nav": "billing", "billing": view}
    # Conditions are raised with settlement on, and the breaker also by promo payouts.
    context["settlement_banners"] = settlement_state.banners(db, account.role)
    if settlement_on:
        context["deposit_address"] = request.app.state.deposit_address
    if account.role == "developer":
        context["challenge"] = new_challenge(db, account, settings.challenge_ttl, " for deposits")
        context["wallets"] = [w.address for w in wallets.wallets_page(db, account, 200, None)[0]]
    else:
        context["promo_payouts_on"] = promo_payouts.Budget.of(settings).enabled
        rows, _ = wallets.payouts_page(db, account, 200, None)
        context["payouts"] = [wallets.payout_out(settings, p) for p in rows]
    return render(request, "billing.html", {**context, **extra}, status_code=status_code)


@router.get("/billing")
def billing_page(request: Request, db: Db, settings: Settings, account: AnyAccount) -> Response:
    return _page(request, db, settings, account)


@router.post("/billing/wallet")
def link_wallet(
    request: Request, form: Form, db: Db, settings: Settings, account: Developer
) -> Response:
    values = {k: str(form.get(k, "")).strip() for k in ("challenge_id", "address", "signature")}
    try:
        wallets.link_developer_wallet(db, settings, account, WalletLinkIn.model_validate(values))
    except ValidationError as exc:
        return _page(request, db, settings, account, 422, errors=field_errors(exc), values=values)
    except KumulusError as exc:
        db.rollback()
        field = "signature" if status_of(exc) == 422 else "address"
        return _page(
            request, db, settings, account, status_of(exc),
            errors={field: exc.detail}, values=values,
        )  # fmt: skip
    return _page(request, db, settings, account, flash="Wallet linked: its deposits count.")


@router.post("/provider/payouts")
def payout(request: Request, form: Form, db: Db, settings: Settings, account: Provider) -> Response:
    try:
        settlement_on = getattr(request.app.state, "chain", None) is not None
        wallets.request_provider_payout(db, settings, account, None, settlement_on)
    except KumulusError as exc:
        db.rollback()
        return _page(request, db, settings, account, status_of(exc), error=exc.detail)
    return _page(request, db, settings, account, flash="Payout requested: it is sent shortly.")
