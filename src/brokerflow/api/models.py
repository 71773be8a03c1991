"""The API's request and response bodies: camelCase JSON, decimals as strings, times in UTC.

Requests accept camelCase names only and refuse unknown fields (a typo such as ``qty`` is a 422
naming it, not an order for the default). Decimals are JSON strings (``"38.12"``): a JSON number
is refused, as on the topics, because a float cannot hold a price exactly.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from brokerflow.schemas.base import (
    Currency,
    Symbol,
    format_decimal,
    format_utc,
    invalid_field,
)
from brokerflow.schemas.notifications import AlertCondition
from brokerflow.schemas.orders import OrderStatus, OrderType, Side, TimeInForce

__all__ = [
    "AccountView",
    "AlertList",
    "AlertRequest",
    "AlertView",
    "AmendRequest",
    "Asset",
    "AssetFees",
    "AssetList",
    "CurrencyBalance",
    "CustodyTransferAnswer",
    "CustodyTransferRequest",
    "FillView",
    "FundingAnswer",
    "FundingRequest",
    "OrderAnswer",
    "OrderChangeAnswer",
    "OrderRequest",
    "OrderView",
    "Portfolio",
    "PositionView",
    "SignupRequest",
    "SignupResponse",
    "TokenRequest",
    "TokenResponse",
]

_DECIMAL = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,12})?$")
DECIMAL_PATTERN = _DECIMAL.pattern
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def _decimal_string(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f'expected a decimal string such as "38.12", got {_kind(value)}')
    if not _DECIMAL.match(value):
        raise ValueError(f'{value[:40]!r} is not a plain decimal such as "38.12"')
    return Decimal(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a JSON number (send it as a string)"
    return "null" if value is None else type(value).__name__


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"must be greater than zero, got {format_decimal(value)}")
    return value


#: A decimal in a request: a JSON string of digits with an optional fraction, above zero.
PositiveAmount = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    AfterValidator(_positive),
    PlainSerializer(format_decimal, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "examples": ["38.12"]}),
]
#: A decimal in a response.
Amount = Annotated[
    Decimal,
    PlainSerializer(format_decimal, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["3812.00"]}),
]
Timestamp = Annotated[
    datetime,
    PlainSerializer(format_utc, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2026-01-02T13:30:00.123000Z"]}
    ),
]
#: Symbols and currencies: validated and upper-cased by the wire schemas' own rules.
SymbolIn = Annotated[
    Symbol,
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9.-]{1,32}$", "examples": ["PETR4"]}),
]
CurrencyIn = Annotated[
    Currency,
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z]{3,5}$", "examples": ["BRL"]}),
]
IdempotencyKey = Annotated[
    str,
    Field(
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Chosen by the client (a UUID is ideal); the same key and body placed again "
        "returns the first answer instead of a second order",
        examples=["5f0c6c1e-2b1e-4c59-9d0f-1f4a2c3b9e10"],
    ),
]


class RequestBody(BaseModel):
    """A request body: camelCase names only, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid"
    )


class ResponseBody(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True
    )


# --- users ---------------------------------------------------------------------------------


class SignupRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "ana", "password": "correct-horse-42"}]}
    )

    username: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$",
        description="3-32 letters, digits, '_', '.', '-'; unique, case-insensitive",
    )
    password: str = Field(min_length=8, max_length=128, description="8-128 characters")

    @model_validator(mode="after")
    def _not_the_username(self) -> SignupRequest:
        if self.password.strip().lower() == self.username.lower():
            raise invalid_field("password", "must not be the username")
        if not self.password.strip():
            raise invalid_field("password", "must not be only spaces")
        return self


class SignupResponse(ResponseBody):
    user_id: str
    account_id: str


class TokenRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "ana", "password": "correct-horse-42"}]}
    )

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


class TokenResponse(ResponseBody):
    access_token: str = Field(description="Send as `Authorization: Bearer <token>`")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


# --- funding -------------------------------------------------------------------------------


class FundingRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"currency": "BRL", "amount": "10000.00"}]}
    )

    currency: CurrencyIn
    amount: PositiveAmount


DecisionStatus = Literal["ACCEPTED", "PENDING"]


class FundingAnswer(ResponseBody):
    request_id: str
    status: DecisionStatus = Field(
        description="ACCEPTED: the ledger has it. PENDING: no decision yet; it follows"
    )
    currency: str
    amount: Amount
    timestamp: Timestamp


class CustodyTransferRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"symbol": "PETR4", "quantity": "100", "averagePrice": "37.50"}]
        }
    )

    symbol: SymbolIn
    quantity: PositiveAmount
    average_price: PositiveAmount | None = Field(
        None, description="Cost basis per share; default: the market's last price"
    )


class CustodyTransferAnswer(ResponseBody):
    request_id: str
    status: DecisionStatus
    symbol: str
    quantity: Amount
    average_price: Amount
    timestamp: Timestamp


# --- assets --------------------------------------------------------------------------------


class AssetFees(ResponseBody):
    schedule: str = Field(description="B3 or CRYPTO")
    buy_pct: Amount = Field(description="Fees of a buy, % of notional")
    sell_pct: Amount = Field(description="Fees of a sell, % of notional")
    components: dict[str, Amount] = Field(description="What the per-side % is made of")


class Asset(ResponseBody):
    symbol: str
    venue: str
    currency: str
    tick_size: Amount
    lot_size: Amount
    session: str = Field(description="B3 (10:00-17:00 Sao Paulo, business days) or 24x7")
    settlement_days: int = Field(description="Business days to settlement (D+2 for B3 stocks)")
    price_band_pct: Amount | None = None
    fees: AssetFees


class AssetList(ResponseBody):
    assets: list[Asset]


# --- account and portfolio -----------------------------------------------------------------


class CurrencyBalance(ResponseBody):
    cash: Amount = Field(description="Settled cash")
    held: Amount = Field(description="Held for open buy orders")
    unsettled_cash: Amount = Field(description="Trades not settled yet (D+2): + to receive")
    buying_power: Amount = Field(description="cash + unsettledCash - held")
    withdrawable: Amount = Field(description="Settled cash not needed for holds")


class AccountView(ResponseBody):
    account_id: str
    balances: dict[str, CurrencyBalance]
    shares_held: dict[str, Amount] = Field(description="Shares held for open sell orders")


class PositionView(ResponseBody):
    symbol: str
    currency: str | None
    quantity: Amount
    avg_price: Amount | None = Field(description="Average cost per share, fees included")
    current_price: Amount | None = Field(description="Last market price; null when unknown")
    market_value: Amount | None
    realized_pnl: Amount
    unrealized_pnl: Amount | None
    pnl: Amount | None = Field(description="realizedPnl + unrealizedPnl; null when unknown")


class Portfolio(ResponseBody):
    cash: dict[str, Amount] = Field(description="Per currency: settled + unsettled cash")
    positions: list[PositionView]


# --- orders --------------------------------------------------------------------------------


class OrderRequest(RequestBody):
    """The seed's body. ``type`` is LIMIT or MARKET; a LIMIT order needs ``price``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "PETR4",
                    "side": "BUY",
                    "type": "LIMIT",
                    "quantity": "100",
                    "price": "38.12",
                    "timeInForce": "DAY",
                    "idempotencyKey": "5f0c6c1e-2b1e-4c59-9d0f-1f4a2c3b9e10",
                }
            ]
        }
    )

    symbol: SymbolIn
    side: Side
    type: OrderType
    quantity: PositiveAmount
    price: PositiveAmount | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderRequest:
        if self.type is OrderType.LIMIT and self.price is None:
            raise invalid_field("price", "a LIMIT order needs a price")
        if self.type is OrderType.MARKET and self.price is not None:
            raise invalid_field("price", "a MARKET order takes no price (leave it out)")
        return self


class OrderAnswer(ResponseBody):
    order_id: str
    status: DecisionStatus = Field(
        description="ACCEPTED: funds held, on its way to the exchange. PENDING: no decision "
        "within the wait; it follows (GET the order)"
    )
    timestamp: Timestamp


class AmendRequest(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"quantity": "50"}]})

    quantity: PositiveAmount | None = None
    price: PositiveAmount | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> AmendRequest:
        if self.quantity is None and self.price is None:
            raise invalid_field("quantity", "an amend needs a new quantity, a new price, or both")
        return self


class OrderChangeAnswer(ResponseBody):
    order_id: str
    request_id: str
    status: DecisionStatus = Field(
        description="ACCEPTED: sent to the exchange (a cancel that loses the race with a fill "
        "is reported as an event). PENDING: no decision yet"
    )
    timestamp: Timestamp


class FillView(ResponseBody):
    execution_id: str
    price: Amount
    quantity: Amount
    fees: Amount
    time: Timestamp | None


class OrderView(ResponseBody):
    order_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Amount
    price: Amount | None
    status: OrderStatus
    filled_quantity: Amount
    leaves_quantity: Amount
    average_price: Amount | None
    fills: list[FillView]
    created_at: Timestamp | None
    updated_at: Timestamp | None
    reject_reason: str | None
    reject_message: str | None = None


class Pagination(ResponseBody):
    total: int = Field(description="Orders matching the filters")
    page: int
    page_size: int


class OrderList(ResponseBody):
    orders: list[OrderView] = Field(description="Newest first")
    pagination: Pagination


class OrderChange(ResponseBody):
    """One state change of an order: what happened and the order's state right after it."""

    sequence: int | None = Field(
        description="The exchange's per-symbol sequence of the event; null for the request "
        "itself and for a refusal by the broker"
    )
    type: str = Field(description="OrderRequested, OrderAccepted, OrderPartiallyFilled, ...")
    event_time: Timestamp
    status: OrderStatus
    filled_quantity: Amount
    leaves_quantity: Amount
    last_price: Amount | None = None
    last_quantity: Amount | None = None
    execution_id: str | None = None
    reason: str | None = None


class OrderHistory(ResponseBody):
    order_id: str
    changes: list[OrderChange] = Field(description="In the order they happened")


class TradeView(ResponseBody):
    """One fill of one of your orders."""

    execution_id: str
    order_id: str
    symbol: str
    side: Side
    price: Amount
    quantity: Amount
    fees: Amount | None = Field(description="Null until the fill is settled in the ledger")
    time: Timestamp


class TradeList(ResponseBody):
    trades: list[TradeView] = Field(description="Newest first")
    pagination: Pagination


class ActivityList(ResponseBody):
    activities: list[dict[str, Any]] = Field(
        description="Ledger entries (deposits, holds, fills, fees, settlements...), newest "
        "first, as on ledger-events-v1"
    )
    pagination: Pagination


# --- price alerts --------------------------------------------------------------------------


class AlertRequest(RequestBody):
    """Notify me once when ``symbol`` trades at or above (or at or below) ``threshold``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"symbol": "PETR4", "condition": "PRICE_AT_OR_ABOVE", "threshold": "40.00"}
            ]
        }
    )

    symbol: SymbolIn
    condition: AlertCondition
    threshold: PositiveAmount


class AlertView(ResponseBody):
    alert_id: str
    symbol: str
    condition: AlertCondition
    threshold: Amount
    status: Literal["ACTIVE", "TRIGGERED", "CANCELLED"] = Field(
        description="ACTIVE until it fires once (TRIGGERED) or you cancel it (CANCELLED)"
    )
    created_at: Timestamp
    triggered_price: Amount | None = Field(None, description="The trade price that fired it")
    triggered_at: Timestamp | None = Field(None, description="That trade's time")
    cancelled_at: Timestamp | None = None


class AlertList(ResponseBody):
    alerts: list[AlertView] = Field(description="Newest first")
