"""Usage and balance (developers: ledger, deposits, wallets) and earnings (providers:
ledger, payouts), over the same functions as the billing API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from kumulus.backend.api.routes import billing as billing_api
from kumulus.backend.api.routes import wallets as wallets_api
from kumulus.backend.deps import Db, Settings
from kumulus.backend.models import Account
from kumulus.backend.schemas import PayoutIn, WalletLinkIn
from kumulus.console.web import AnyAccount, Developer, Form, Provider, field_errors, render

router = APIRouter(prefix="/console", include_in_schema=False)


def _page(
    request: Request,
    db: Db,
    settings: Settings,
    account: Account,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    view = billing_api.get_billing(account, request, db, settings, limit=200)
    context: dict[str, Any] = {"title": "Billing", "nav": "billing", "billing": view}
    if getattr(request.app.state, "chain", None) is not None:
        context["deposit_address"] = request.app.state.payout_key.ss58_address
    if account.role == "developer":
        context["challenge"] = wallets_api.developer_wallet_challenge(account, db, settings)
        context["wallets"] = [w.address for w in wallets_api.developer_wallets(account, db)]
    else:
        context["payouts"] = wallets_api.list_payouts(account, db, settings)
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
        wallets_api.developer_wallet_link(
            WalletLinkIn.model_validate(values), account, db, settings
        )
    except ValidationError as exc:
        return _page(request, db, settings, account, 422, errors=field_errors(exc), values=values)
    except HTTPException as exc:
        db.rollback()
        field = "signature" if exc.status_code == 422 else "address"
        return _page(
            request, db, settings, account, exc.status_code,
            errors={field: exc.detail}, values=values,
        )  # fmt: skip
    return _page(request, db, settings, account, flash="Wallet linked: its deposits count.")


@router.post("/provider/payouts")
def payout(request: Request, form: Form, db: Db, settings: Settings, account: Provider) -> Response:
    try:
        wallets_api.create_payout(PayoutIn(), account, request, db, settings)
    except HTTPException as exc:
        db.rollback()
        return _page(request, db, settings, account, exc.status_code, error=exc.detail)
    return _page(request, db, settings, account, flash="Payout requested: it is sent shortly.")
