"""One account's state: cash per currency, positions, open orders and their holds, pending
settlements, and the last exchange sequence applied per symbol.

Every record is a frozen dataclass; the core never changes one in place, it builds a new
:class:`AccountState` (so a caller holding the old one still has the old one). The table record
is :meth:`AccountState.to_bytes`: compact JSON, decimals as strings, and
``AccountState.from_bytes(state.to_bytes()) == state``.

Cash has three parts per currency::

    settled S     cash that has arrived (deposits, settled sale proceeds, minus purchases)
    unsettled U   sale proceeds waiting for their settlement date (B3: D+2)
    held H        reserved for open BUY orders

    buying power  = S + U - H      (unsettled proceeds may be spent at once)
    withdrawable  = max(0, S - H)  (but not withdrawn before they settle)

S may dip below zero when a purchase spends unsettled proceeds; it comes back when they settle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "AccountState",
    "Balance",
    "Cash",
    "OpenOrder",
    "PendingAmend",
    "PendingSettlement",
    "Position",
    "balances",
]

ZERO: Final = Decimal(0)
#: The currency an account opens with (the ``AccountOpened`` entry's currency).
HOME_CURRENCY: Final = "BRL"


def _text(value: Decimal) -> str:
    return format(value, "f")


def _optional_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _optional_decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class Cash:
    """One currency's cash: settled, unsettled and held (see the module docstring)."""

    settled: Decimal = ZERO
    unsettled: Decimal = ZERO
    held: Decimal = ZERO

    @property
    def buying_power(self) -> Decimal:
        return self.settled + self.unsettled - self.held

    @property
    def withdrawable(self) -> Decimal:
        return max(ZERO, self.settled - self.held)

    def to_record(self) -> dict[str, Any]:
        return {"s": _text(self.settled), "u": _text(self.unsettled), "h": _text(self.held)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Cash:
        return cls(Decimal(record["s"]), Decimal(record["u"]), Decimal(record["h"]))


@dataclass(frozen=True, slots=True)
class Position:
    """Shares of one symbol at average cost; ``held`` are reserved for open SELL orders."""

    symbol: str
    currency: str
    quantity: Decimal = ZERO
    held: Decimal = ZERO
    #: Average cost per share including buy fees; ``None`` when flat.
    average_price: Decimal | None = None
    realized_pnl: Decimal = ZERO

    @property
    def available(self) -> Decimal:
        """Shares a new SELL may use (no short selling)."""
        return self.quantity - self.held

    def to_record(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "quantity": _text(self.quantity),
            "held": _text(self.held),
            "averagePrice": _optional_text(self.average_price),
            "realizedPnl": _text(self.realized_pnl),
        }

    @classmethod
    def from_record(cls, symbol: str, record: Mapping[str, Any]) -> Position:
        return cls(
            symbol=symbol,
            currency=record["currency"],
            quantity=Decimal(record["quantity"]),
            held=Decimal(record["held"]),
            average_price=_optional_decimal(record["averagePrice"]),
            realized_pnl=Decimal(record["realizedPnl"]),
        )


@dataclass(frozen=True, slots=True)
class PendingAmend:
    """An amend forwarded to the exchange and not yet answered.

    ``extra_hold`` is what was held for it at once (cash for a BUY, shares for a SELL) because
    the amended order may need more than it held; released if the amend loses.
    """

    request_id: str
    quantity: Decimal | None
    price: Decimal | None
    extra_hold: Decimal = ZERO

    def to_record(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "quantity": _optional_text(self.quantity),
            "price": _optional_text(self.price),
            "extraHold": _text(self.extra_hold),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PendingAmend:
        return cls(
            request_id=record["requestId"],
            quantity=_optional_decimal(record["quantity"]),
            price=_optional_decimal(record["price"]),
            extra_hold=Decimal(record["extraHold"]),
        )


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order the broker placed and the exchange has not closed yet.

    ``hold`` is what is still reserved for it: cash for a BUY, shares for a SELL. Fees are
    charged on the order's cumulative notional (``fees`` = fee(``notional``) so far), so an
    order pays the same fees however the exchange splits it into fills. ``attributed`` is the
    cumulative notional at the order's own price (the limit, or a MARKET buy's ``estimate``):
    what a BUY's hold is accounted against, fill by fill.
    """

    order_id: str
    symbol: str
    side: str  # "BUY" | "SELL"
    order_type: str  # "LIMIT" | "MARKET"
    time_in_force: str
    quantity: Decimal
    price: Decimal | None
    currency: str
    filled: Decimal = ZERO
    hold: Decimal = ZERO
    #: A MARKET buy's price estimate: last price x (1 + collar).
    estimate: Decimal | None = None
    notional: Decimal = ZERO
    fees: Decimal = ZERO
    attributed: Decimal = ZERO
    acknowledged: bool = False
    #: The request id of a cancel forwarded to the exchange and not yet answered.
    cancel_request: str | None = None
    amend: PendingAmend | None = None

    @property
    def leaves(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def hold_price(self) -> Decimal | None:
        """The price a BUY's hold is computed at: the limit, or the MARKET estimate."""
        return self.price if self.price is not None else self.estimate

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side,
            "orderType": self.order_type,
            "timeInForce": self.time_in_force,
            "quantity": _text(self.quantity),
            "price": _optional_text(self.price),
            "currency": self.currency,
            "filled": _text(self.filled),
            "hold": _text(self.hold),
            "estimate": _optional_text(self.estimate),
            "notional": _text(self.notional),
            "fees": _text(self.fees),
            "attributed": _text(self.attributed),
            "acknowledged": self.acknowledged,
            "cancelRequest": self.cancel_request,
            "amend": None if self.amend is None else self.amend.to_record(),
        }

    @classmethod
    def from_record(cls, order_id: str, record: Mapping[str, Any]) -> OpenOrder:
        amend = record["amend"]
        return cls(
            order_id=order_id,
            symbol=record["symbol"],
            side=record["side"],
            order_type=record["orderType"],
            time_in_force=record["timeInForce"],
            quantity=Decimal(record["quantity"]),
            price=_optional_decimal(record["price"]),
            currency=record["currency"],
            filled=Decimal(record["filled"]),
            hold=Decimal(record["hold"]),
            estimate=_optional_decimal(record["estimate"]),
            notional=Decimal(record["notional"]),
            fees=Decimal(record["fees"]),
            attributed=Decimal(record["attributed"]),
            acknowledged=record["acknowledged"],
            cancel_request=record["cancelRequest"],
            amend=None if amend is None else PendingAmend.from_record(amend),
        )


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    """Sale proceeds that become settled cash on ``settlement_date`` (Sao Paulo date)."""

    trade_id: str
    currency: str
    amount: Decimal
    settlement_date: date

    def to_record(self) -> dict[str, Any]:
        return {
            "tradeId": self.trade_id,
            "currency": self.currency,
            "amount": _text(self.amount),
            "settlementDate": self.settlement_date.isoformat(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PendingSettlement:
        return cls(
            trade_id=record["tradeId"],
            currency=record["currency"],
            amount=Decimal(record["amount"]),
            settlement_date=date.fromisoformat(record["settlementDate"]),
        )


@dataclass(frozen=True)
class AccountState:
    """Everything one account's decisions depend on. Treat the mappings as read-only."""

    account_id: str
    user_id: str
    #: The sequence number the next ledger entry of this account takes.
    next_sequence: int = 1
    currency: str = HOME_CURRENCY
    cash: Mapping[str, Cash] = field(default_factory=dict)
    positions: Mapping[str, Position] = field(default_factory=dict)
    orders: Mapping[str, OpenOrder] = field(default_factory=dict)
    #: In the order they were created (settlement dates are not monotonic across symbols).
    settlements: tuple[PendingSettlement, ...] = ()
    #: The last exchange sequence applied per symbol: a report at or below it is a duplicate.
    last_report_sequence: Mapping[str, int] = field(default_factory=dict)
    #: Ids of orders closed lately -> when (ISO UTC): refused if placed again, for
    #: ``BrokerRules.closed_order_memory`` (bounded: older ones are forgotten).
    recently_closed: Mapping[str, str] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # mappings inside: equality, not identity

    def cash_in(self, currency: str) -> Cash:
        """The cash of a currency (all zero when the account never held any)."""
        return self.cash.get(currency) or Cash()

    def position(self, symbol: str, currency: str) -> Position:
        """The position in a symbol (flat when there is none)."""
        return self.positions.get(symbol) or Position(symbol, currency)

    def to_record(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "userId": self.user_id,
            "nextSequence": self.next_sequence,
            "currency": self.currency,
            "cash": {code: cash.to_record() for code, cash in self.cash.items()},
            "positions": {symbol: p.to_record() for symbol, p in self.positions.items()},
            "orders": {order_id: o.to_record() for order_id, o in self.orders.items()},
            "settlements": [s.to_record() for s in self.settlements],
            "lastReportSequence": dict(self.last_report_sequence),
            "recentlyClosed": dict(self.recently_closed),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AccountState:
        return cls(
            account_id=record["accountId"],
            user_id=record["userId"],
            next_sequence=record["nextSequence"],
            currency=record["currency"],
            cash={code: Cash.from_record(c) for code, c in record["cash"].items()},
            positions={s: Position.from_record(s, p) for s, p in record["positions"].items()},
            orders={i: OpenOrder.from_record(i, o) for i, o in record["orders"].items()},
            settlements=tuple(PendingSettlement.from_record(s) for s in record["settlements"]),
            last_report_sequence=dict(record["lastReportSequence"]),
            recently_closed=dict(record.get("recentlyClosed", {})),
        )

    def to_bytes(self) -> bytes:
        """The table record: compact JSON, decimals as strings."""
        return json.dumps(self.to_record(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> AccountState:
        return cls.from_record(json.loads(data))


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency's balances as a user sees them."""

    cash: Decimal  # settled
    held: Decimal
    unsettled: Decimal
    buying_power: Decimal
    withdrawable: Decimal

    def to_wire(self) -> dict[str, str]:
        return {
            "cash": _text(self.cash),
            "held": _text(self.held),
            "unsettled": _text(self.unsettled),
            "buyingPower": _text(self.buying_power),
            "withdrawable": _text(self.withdrawable),
        }


def balances(state: AccountState) -> dict[str, Balance]:
    """Per currency the account has touched (its home currency always):
    settled cash, held, unsettled, buying power and withdrawable."""
    currencies = [state.currency, *sorted(set(state.cash) - {state.currency})]
    result: dict[str, Balance] = {}
    for currency in currencies:
        cash = state.cash_in(currency)
        result[currency] = Balance(
            cash=cash.settled,
            held=cash.held,
            unsettled=cash.unsettled,
            buying_power=cash.buying_power,
            withdrawable=cash.withdrawable,
        )
    return result
