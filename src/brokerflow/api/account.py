"""The user's account: simulated funding (requests to the accounts agent), balances and
portfolio (read models in MongoDB, prices from the market cache).

Funding answers with the agent's decision: 201 ACCEPTED, a refusal's status (403
INSUFFICIENT_FUNDS beyond the withdrawable cash), or 202 PENDING when no decision came within
``API_DECISION_WAIT_MS`` (it follows; the balances show it).

Reads come from the projections (``accounts``, ``positions``), which trail the ledger by a
moment; a just-created account has no read model yet and shows zeros.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from brokerflow.api.context import ApiContext
from brokerflow.api.decisions import Decision
from brokerflow.api.deps import Caller, Context
from brokerflow.api.errors import ApiError, error_responses, refusal
from brokerflow.api.models import (
    AccountView,
    CurrencyBalance,
    CustodyTransferAnswer,
    CustodyTransferRequest,
    FundingAnswer,
    FundingRequest,
    Portfolio,
    PositionView,
)
from brokerflow.api.security import Principal
from brokerflow.broker import Cash
from brokerflow.schemas.accounts import DepositCash, RequestRefused, TransferCustody, WithdrawCash

__all__ = ["account_view", "portfolio_view", "router", "to_decimal"]

router = APIRouter(prefix="/api/v1", tags=["account"])

_AUTH = (401, 429, 503)


def to_decimal(value: Any, default: Decimal | None = Decimal(0)) -> Decimal | None:
    """A read model's decimal string as a Decimal; ``default`` when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return default
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return default
    return result if result.is_finite() else default


def _zero(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


# --- funding -------------------------------------------------------------------------------


def _check_amount(ctx: ApiContext, currency: str, amount: Decimal) -> None:
    currencies = sorted({instrument.currency for instrument in ctx.rules.instruments})
    if currency not in currencies:
        raise ApiError(
            422,
            "UNKNOWN_CURRENCY",
            f"{currency} is not traded here; currencies: {', '.join(currencies)}",
            field="currency",
        )
    places = ctx.rules.instruments.currency_decimals(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):
        raise ApiError(
            422,
            "AMOUNT_PRECISION",
            f"{currency} amounts have at most {places} decimal places",
            field="amount",
        )


def _refused(decision: Decision | None, **extra: Any) -> None:
    if isinstance(decision, RequestRefused):
        raise refusal(decision.code, decision.message, **extra)


async def _fund(
    ctx: Context, who: Principal, body: FundingRequest, kind: type[DepositCash | WithdrawCash]
) -> FundingAnswer:
    _check_amount(ctx, body.currency, body.amount)
    now = datetime.now(UTC)
    request = kind(
        request_id=str(uuid.uuid4()),
        account_id=who.account_id,
        currency=body.currency,
        amount=body.amount,
        event_time=now,
    )
    decision = await ctx.request(request)
    _refused(decision, request_id=request.request_id)
    return FundingAnswer(
        request_id=request.request_id,
        status="PENDING" if decision is None else "ACCEPTED",
        currency=body.currency,
        amount=body.amount,
        timestamp=now,
    )


_FUNDING_RESPONSES = {
    202: {"model": FundingAnswer, "description": "No decision yet; it follows"},
    **error_responses(400, 403, 404, 409, 422, *_AUTH),
}


@router.post(
    "/account/deposits",
    status_code=201,
    response_model=FundingAnswer,
    responses=_FUNDING_RESPONSES,
    summary="Deposit cash (simulated funding)",
)
async def deposit(body: FundingRequest, ctx: Context, who: Caller) -> Any:
    answer = await _fund(ctx, who, body, DepositCash)
    return _with_status(answer)


@router.post(
    "/account/withdrawals",
    status_code=201,
    response_model=FundingAnswer,
    responses=_FUNDING_RESPONSES,
    summary="Withdraw cash (refused beyond the withdrawable amount)",
)
async def withdraw(body: FundingRequest, ctx: Context, who: Caller) -> Any:
    answer = await _fund(ctx, who, body, WithdrawCash)
    return _with_status(answer)


@router.post(
    "/account/custody-transfers",
    status_code=201,
    response_model=CustodyTransferAnswer,
    responses={
        202: {"model": CustodyTransferAnswer, "description": "No decision yet; it follows"},
        **error_responses(400, 403, 404, 409, 422, *_AUTH),
    },
    summary="Move shares in from another custodian",
)
async def transfer_custody(body: CustodyTransferRequest, ctx: Context, who: Caller) -> Any:
    """So that a user can sell without a prior buy. `averagePrice` (the cost basis) defaults to
    the market's last price."""
    instrument = ctx.rules.instruments.get(body.symbol)
    if instrument is None:
        raise refusal("UNKNOWN_SYMBOL", f"{body.symbol} is not traded here; see /api/v1/assets")
    if body.quantity % instrument.lot_size != 0:
        raise refusal(
            "LOT_SIZE", f"{body.symbol} moves in lots of {instrument.lot_size}; got {body.quantity}"
        )
    price = body.average_price
    if price is None:
        price = (await ctx.last_prices([body.symbol])).get(body.symbol)
        if price is None:
            raise ApiError(
                422,
                "AVERAGE_PRICE_REQUIRED",
                f"no market price is known for {body.symbol}; send averagePrice (the cost basis)",
                field="averagePrice",
            )
    now = datetime.now(UTC)
    request = TransferCustody(
        request_id=str(uuid.uuid4()),
        account_id=who.account_id,
        symbol=body.symbol,
        quantity=body.quantity,
        average_price=price,
        event_time=now,
    )
    decision = await ctx.request(request)
    _refused(decision, request_id=request.request_id)
    answer = CustodyTransferAnswer(
        request_id=request.request_id,
        status="PENDING" if decision is None else "ACCEPTED",
        symbol=body.symbol,
        quantity=body.quantity,
        average_price=price,
        timestamp=now,
    )
    return _with_status(answer)


def _with_status(answer: FundingAnswer | CustodyTransferAnswer) -> JSONResponse:
    status = 201 if answer.status == "ACCEPTED" else 202
    return JSONResponse(answer.model_dump(mode="json", by_alias=True), status_code=status)


# --- balances ------------------------------------------------------------------------------


def account_view(
    account_id: str, document: Mapping[str, Any] | None, currencies: Iterable[str]
) -> AccountView:
    """Balances per currency from the ``accounts`` read model (zeros when there is none yet).

    buyingPower and withdrawable as the accounts agent computes them (:class:`brokerflow.broker.
    Cash`): cash + unsettled - held, and settled cash not held, never below zero."""
    document = document or {}
    raw = document.get("balances")
    balances = raw if isinstance(raw, Mapping) else {}
    view: dict[str, CurrencyBalance] = {}
    for currency in sorted(set(currencies) | {str(c) for c in balances}):
        entry = balances.get(currency)
        entry = entry if isinstance(entry, Mapping) else {}
        cash = _zero(to_decimal(entry.get("cash")))
        held = _zero(to_decimal(entry.get("held")))
        unsettled = _zero(to_decimal(entry.get("unsettled")))
        amounts = Cash(settled=cash, unsettled=unsettled, held=held)
        view[currency] = CurrencyBalance(
            cash=cash,
            held=held,
            unsettled_cash=unsettled,
            buying_power=amounts.buying_power,
            withdrawable=amounts.withdrawable,
        )
    raw_shares = document.get("sharesHeld")
    shares = raw_shares if isinstance(raw_shares, Mapping) else {}
    held_shares = {
        str(symbol): quantity
        for symbol, value in sorted(shares.items())
        if (quantity := to_decimal(value, None)) is not None and quantity != 0
    }
    return AccountView(account_id=account_id, balances=view, shares_held=held_shares)


@router.get(
    "/account",
    response_model=AccountView,
    responses=error_responses(*_AUTH),
    summary="Cash, holds, buying power and shares held, per currency",
)
async def get_account(ctx: Context, who: Caller) -> AccountView:
    document, _ = await ctx.portfolio_documents(who.account_id)
    currencies = {instrument.currency for instrument in ctx.rules.instruments}
    return account_view(who.account_id, document, currencies)


# --- portfolio -----------------------------------------------------------------------------


def _round(value: Decimal, places: int | None) -> Decimal:
    if places is None:
        return value
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def portfolio_view(
    account: Mapping[str, Any] | None,
    positions: Iterable[Mapping[str, Any]],
    prices: Mapping[str, Decimal],
    decimals: Mapping[str, int],
    currencies: Iterable[str] = (),
) -> Portfolio:
    """Cash (settled + unsettled) per currency and each position valued at the last price.

    marketValue = quantity x currentPrice; unrealizedPnl = (currentPrice - avgPrice) x
    quantity; pnl = realizedPnl + unrealizedPnl, each rounded half-even to the currency's
    places. Without a known price the three are null."""
    balances = account_view("", account, currencies).balances
    cash = {currency: b.cash + b.unsettled_cash for currency, b in balances.items()}
    views: list[PositionView] = []
    for document in sorted(positions, key=lambda d: str(d.get("symbol", ""))):
        symbol = str(document.get("symbol", ""))
        currency = document.get("currency")
        currency = str(currency) if currency is not None else None
        places = decimals.get(currency) if currency is not None else None
        quantity = _zero(to_decimal(document.get("quantity")))
        average = to_decimal(document.get("averagePrice"), None)
        realized = _zero(to_decimal(document.get("realizedPnl")))
        price = prices.get(symbol)
        value = unrealized = pnl = None
        if price is not None:
            value = _round(quantity * price, places)
            unrealized = _round((price - (average or Decimal(0))) * quantity, places)
            if average is None and quantity != 0:
                unrealized = None  # no cost basis: the gain is unknown
            pnl = None if unrealized is None else realized + unrealized
        views.append(
            PositionView(
                symbol=symbol,
                currency=currency,
                quantity=quantity,
                avg_price=average,
                current_price=price,
                market_value=value,
                realized_pnl=realized,
                unrealized_pnl=unrealized,
                pnl=pnl,
            )
        )
    return Portfolio(cash=cash, positions=views)


@router.get(
    "/portfolio",
    response_model=Portfolio,
    responses=error_responses(*_AUTH),
    summary="Cash and positions valued at the market's last prices",
)
async def get_portfolio(ctx: Context, who: Caller) -> Portfolio:
    account, positions = await ctx.portfolio_documents(who.account_id)
    symbols = sorted({str(p.get("symbol", "")) for p in positions if p.get("symbol")})
    prices = await ctx.last_prices(symbols)
    instruments = list(ctx.rules.instruments)
    currencies = {instrument.currency for instrument in instruments}
    decimals = {c: ctx.rules.instruments.currency_decimals(c) for c in currencies}
    return portfolio_view(account, positions, prices, decimals, currencies)
