"""Broker account requests (API -> accounts agent) and the agent's decisions on them.

The API never changes an account itself: it publishes a request on ``account-commands-v1``, keyed
by account, and the accounts agent, which owns balances, holds and positions, decides it in log
order and answers on ``account-events-v1``: exactly one ``RequestAccepted`` or ``RequestRefused``
per ``requestId``. The money itself moves as ledger events (:mod:`.ledger`); an accepted order
request is forwarded to the exchange as a ``PlaceOrder`` keyed by symbol::

    API --RequestOrder--> account-commands-v1 --accounts agent--> FundsHeld  (ledger-events-v1)
                                                                 RequestAccepted (account-events-v1)
                                                                 PlaceOrder (order-commands-v1)

A request carries everything its decision depends on (the event time, and for a MARKET buy the
market price the hold is estimated from), so replaying the request log decides every request the
same way again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from brokerflow.schemas.base import (
    Currency,
    Message,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    invalid_field,
)
from brokerflow.schemas.orders import OrderType, Side, TimeInForce, check_price_matches_type

__all__ = [
    "AccountCommand",
    "AccountEvent",
    "CancelRequestRejected",
    "DepositCash",
    "OpenAccount",
    "RequestAccepted",
    "RequestAmend",
    "RequestCancel",
    "RequestOrder",
    "RequestRefused",
    "SettleDue",
    "TransferCustody",
    "WithdrawCash",
]

Id = Annotated[str, Field(min_length=1, max_length=64)]


class _AccountRequest(Message):
    #: Unique per request; the decision answers it by this id (an order's id for RequestOrder).
    request_id: Id
    account_id: Id
    #: When the API accepted the request: the agent's clock for it (settlement dates, holds).
    event_time: UtcDatetime


class OpenAccount(_AccountRequest):
    type: Literal["OpenAccount"] = "OpenAccount"
    user_id: Id


class DepositCash(_AccountRequest):
    """Simulated funding: cash arrives from outside the broker."""

    type: Literal["DepositCash"] = "DepositCash"
    currency: Currency
    amount: PositiveDecimal
    reference: Id | None = None


class WithdrawCash(_AccountRequest):
    """Refused beyond the settled cash not held for open orders."""

    type: Literal["WithdrawCash"] = "WithdrawCash"
    currency: Currency
    amount: PositiveDecimal
    reference: Id | None = None


class TransferCustody(_AccountRequest):
    """Shares moved in from another custodian, so a user can sell without a prior buy.

    ``average_price`` is the cost basis the position takes them at (the API fills in the market
    price when the user gives none)."""

    type: Literal["TransferCustody"] = "TransferCustody"
    symbol: Symbol
    quantity: PositiveDecimal
    average_price: PositiveDecimal


class RequestOrder(_AccountRequest):
    """Place an order: hold funds or shares, then send ``PlaceOrder`` to the exchange.

    ``request_id`` equals ``order_id``. ``market_price`` is the last price the API read from the
    market cache for a MARKET order (a BUY's hold is estimated from it plus the collar); a MARKET
    BUY without one is refused with ``NO_MARKET_PRICE``.
    """

    type: Literal["RequestOrder"] = "RequestOrder"
    order_id: Id
    symbol: Symbol
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    market_price: PositiveDecimal | None = None
    idempotency_key: Id | None = None

    @model_validator(mode="after")
    def _price_matches_type(self) -> RequestOrder:
        check_price_matches_type(self.order_type, self.price)
        return self


class RequestCancel(_AccountRequest):
    type: Literal["RequestCancel"] = "RequestCancel"
    order_id: Id


class RequestAmend(_AccountRequest):
    """Quantity down keeps time priority; a new price or more quantity re-queues the order."""

    type: Literal["RequestAmend"] = "RequestAmend"
    order_id: Id
    quantity: PositiveDecimal | None = None
    price: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> RequestAmend:
        if self.quantity is None and self.price is None:
            raise invalid_field("quantity", "an amend needs a new quantity, a new price, or both")
        return self


class SettleDue(_AccountRequest):
    """Bring in the settlements due by ``event_time``'s date (Sao Paulo).

    Every request settles what is due first, so an active account never needs it; the
    reconciler's daily sweep sends it to accounts with unsettled proceeds, so D+2 cash becomes
    withdrawable on its date even when its owner does nothing. Always accepted."""

    type: Literal["SettleDue"] = "SettleDue"


AccountCommand = Annotated[
    OpenAccount
    | DepositCash
    | WithdrawCash
    | TransferCustody
    | RequestOrder
    | RequestCancel
    | RequestAmend
    | SettleDue,
    Field(discriminator="type"),
]


# --- decisions -----------------------------------------------------------------------------


class _Decision(Message):
    request_id: Id
    account_id: Id
    #: The ``type`` of the request decided (``RequestOrder``, ``WithdrawCash``...).
    command: str = Field(min_length=1, max_length=64)
    order_id: Id | None = None
    event_time: UtcDatetime


class RequestAccepted(_Decision):
    """The request took effect: its ledger entries are in the same transaction; for an order,
    the hold is placed and the command is on its way to the exchange."""

    type: Literal["RequestAccepted"] = "RequestAccepted"


class RequestRefused(_Decision):
    """Nothing changed. ``code`` is machine-readable (``INSUFFICIENT_BUYING_POWER``,
    ``INSUFFICIENT_SHARES``, ``NO_MARKET_PRICE``, ``UNKNOWN_ACCOUNT``, ``ORDER_NOT_OPEN``...)."""

    type: Literal["RequestRefused"] = "RequestRefused"
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=1024)


class CancelRequestRejected(_Decision):
    """A cancel (or amend) the broker forwarded lost the race: the exchange had already filled,
    cancelled or expired the order. Said as an event so the user is never left guessing."""

    type: Literal["CancelRequestRejected"] = "CancelRequestRejected"
    #: The exchange's reason (``UNKNOWN_ORDER``, ``AMEND_BELOW_FILLED``).
    reason: str = Field(min_length=1, max_length=64)
    detail: str = Field(default="", max_length=1024)


AccountEvent = Annotated[
    RequestAccepted | RequestRefused | CancelRequestRejected,
    Field(discriminator="type"),
]
