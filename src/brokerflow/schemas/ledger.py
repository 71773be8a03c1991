"""Broker-side account ledger: cash, holds and positions, as an append-only stream of entries.

The ledger is the write model of the seed's CQRS split: portfolio and balance views are
projections that fold these events. Placing an order puts a soft hold on what it could spend
(cash for a BUY, shares for a SELL), so available = balance - holds; a fill settles against the
hold, and whatever the order no longer needs is released when it ends::

    CashDeposited 100000      balance 100000  held 0
    FundsHeld     28500       balance 100000  held 28500   BUY 10 PETR4 @ 2850 placed
    FillSettled   -28470      balance  71530  held 0       filled 10 @ 2847, 28500 of hold used
                                                            (price improvement: 30 back to free)

Every entry carries the account's gap-free ``sequence`` (a projector detects a missed entry) and
an ``entry_id`` (a projector that has already applied one skips it: at-least-once delivery,
exactly-once effect).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from brokerflow.schemas.base import (
    Currency,
    DecimalStr,
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    format_decimal,
    invalid_field,
)
from brokerflow.schemas.orders import Side

__all__ = [
    "AccountOpened",
    "CashDeposited",
    "CashSettled",
    "CashWithdrawn",
    "CustodyTransferredIn",
    "FillSettled",
    "FundsHeld",
    "FundsReleased",
    "HoldReleaseReason",
    "LedgerEvent",
    "SharesHeld",
    "SharesReleased",
]

Id = Annotated[str, Field(min_length=1, max_length=64)]


class HoldReleaseReason(StrEnum):
    """Why an order no longer needs (part of) its hold."""

    ORDER_FILLED = "ORDER_FILLED"  # fully filled; the rest of the hold was price improvement
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    ORDER_REJECTED = "ORDER_REJECTED"
    ORDER_AMENDED = "ORDER_AMENDED"  # amended to a smaller quantity or a cheaper price


class _LedgerEventBase(Message):
    account_id: Id
    #: Per-account, gap-free, starting at 0 with ``AccountOpened``.
    sequence: int = Field(ge=0)
    #: Unique per entry; the key that makes applying an entry twice a no-op.
    entry_id: Id
    #: The account's cash currency; every amount in the entry is in it.
    currency: Currency
    event_time: UtcDatetime


class AccountOpened(_LedgerEventBase):
    type: Literal["AccountOpened"] = "AccountOpened"
    user_id: Id

    @model_validator(mode="after")
    def _opens_the_sequence(self) -> AccountOpened:
        if self.sequence != 0:
            raise invalid_field(
                "sequence", "AccountOpened is entry 0 of its account", self.sequence
            )
        return self


class CashDeposited(_LedgerEventBase):
    type: Literal["CashDeposited"] = "CashDeposited"
    amount: PositiveDecimal
    #: The payment rail's transfer id, when there is one.
    reference: Id | None = None


class CashWithdrawn(_LedgerEventBase):
    type: Literal["CashWithdrawn"] = "CashWithdrawn"
    amount: PositiveDecimal
    reference: Id | None = None


class CustodyTransferredIn(_LedgerEventBase):
    """Shares moved in from another custodian at a cost basis (no cash moves)."""

    type: Literal["CustodyTransferredIn"] = "CustodyTransferredIn"
    symbol: Symbol
    quantity: PositiveDecimal
    #: The cost basis of the shares moved in.
    price: PositiveDecimal
    #: The position after the transfer, at average cost.
    position_quantity: PositiveDecimal
    average_price: PositiveDecimal


class CashSettled(_LedgerEventBase):
    """Sale proceeds reach their settlement date: unsettled cash becomes withdrawable."""

    type: Literal["CashSettled"] = "CashSettled"
    trade_id: Id
    amount: PositiveDecimal
    settlement_date: date


class FundsHeld(_LedgerEventBase):
    """Cash reserved for a BUY order at placement (quantity x limit price, or an estimate)."""

    type: Literal["FundsHeld"] = "FundsHeld"
    order_id: Id
    amount: PositiveDecimal


class FundsReleased(_LedgerEventBase):
    """Cash an order had reserved and no longer needs, back to the available balance."""

    type: Literal["FundsReleased"] = "FundsReleased"
    order_id: Id
    amount: PositiveDecimal
    reason: HoldReleaseReason


class SharesHeld(_LedgerEventBase):
    """Shares reserved for a SELL order at placement, so they cannot be sold twice."""

    type: Literal["SharesHeld"] = "SharesHeld"
    order_id: Id
    symbol: Symbol
    quantity: PositiveDecimal


class SharesReleased(_LedgerEventBase):
    type: Literal["SharesReleased"] = "SharesReleased"
    order_id: Id
    symbol: Symbol
    quantity: PositiveDecimal
    reason: HoldReleaseReason


class FillSettled(_LedgerEventBase):
    """One side of one exchange trade applied to one account: cash, position and hold.

    Deltas are signed from the account's point of view and must agree with the trade:
    a BUY pays ``quantity * price + fees`` and gains ``quantity`` shares; a SELL receives
    ``quantity * price - fees`` and gives up ``quantity`` shares. The position after the fill
    uses average cost: buys move ``average_price``, sells realize ``realized_pnl``.
    """

    type: Literal["FillSettled"] = "FillSettled"
    trade_id: Id
    order_id: Id
    symbol: Symbol
    side: Side
    quantity: PositiveDecimal
    price: PositiveDecimal
    fees: NonNegativeDecimal = Decimal(0)
    cash_delta: DecimalStr
    position_delta: DecimalStr
    #: How much of the order's hold this fill used up: cash for a BUY, shares for a SELL.
    cash_hold_released: NonNegativeDecimal
    shares_hold_released: NonNegativeDecimal
    #: The position after this fill; ``average_price`` is null when it is flat.
    position_quantity: NonNegativeDecimal
    average_price: PositiveDecimal | None
    #: (price - average cost) * quantity - fees on a SELL; 0 on a BUY.
    realized_pnl: DecimalStr
    #: Set when the cash of this fill is unsettled until that date (a B3 sale settles D+2):
    #: spendable at once, withdrawable only after the ``CashSettled`` that date brings.
    settlement_date: date | None = None

    @model_validator(mode="after")
    def _agrees_with_the_trade(self) -> FillSettled:
        gross = self.quantity * self.price
        if self.side is Side.BUY:
            expected_cash, expected_position = -(gross + self.fees), self.quantity
            wrong_hold = ("shares_hold_released", self.shares_hold_released)
        else:
            expected_cash, expected_position = gross - self.fees, -self.quantity
            wrong_hold = ("cash_hold_released", self.cash_hold_released)
            if self.shares_hold_released != self.quantity:
                raise invalid_field(
                    "shares_hold_released",
                    f"a SELL fill releases exactly its quantity ({format_decimal(self.quantity)})",
                    format_decimal(self.shares_hold_released),
                )
        if self.cash_delta != expected_cash:
            raise invalid_field(
                "cash_delta",
                f"a {self.side.value} of {format_decimal(self.quantity)} at"
                f" {format_decimal(self.price)} with fees {format_decimal(self.fees)}"
                f" moves cash by {format_decimal(expected_cash)}",
                format_decimal(self.cash_delta),
            )
        if self.position_delta != expected_position:
            raise invalid_field(
                "position_delta",
                f"a {self.side.value} of {format_decimal(self.quantity)} moves the position by"
                f" {format_decimal(expected_position)}",
                format_decimal(self.position_delta),
            )
        name, value = wrong_hold
        if value != 0:
            raise invalid_field(name, f"must be 0 on a {self.side.value}", format_decimal(value))
        if (self.position_quantity == 0) != (self.average_price is None):
            raise invalid_field(
                "average_price", "is null exactly when the position after the fill is flat"
            )
        return self


LedgerEvent = Annotated[
    AccountOpened
    | CashDeposited
    | CashWithdrawn
    | CustodyTransferredIn
    | CashSettled
    | FundsHeld
    | FundsReleased
    | SharesHeld
    | SharesReleased
    | FillSettled,
    Field(discriminator="type"),
]
