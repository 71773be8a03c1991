"""Account ledger entries: cash, holds, settled fills."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from brokerflow.schemas import (
    CashDeposited,
    FillSettled,
    HoldReleaseReason,
    Message,
    Side,
    decode,
)
from brokerflow.schemas.examples import (
    ACCOUNT_OPENED,
    CASH_DEPOSITED,
    CASH_WITHDRAWN,
    FILL_SETTLED,
    FUNDS_HELD,
    FUNDS_RELEASED,
    SHARES_HELD,
    SHARES_RELEASED,
)

from .support import DROP, changed, rejection, wire

# SELL 40 @ 39.00 with 0.39 fees out of a 40-share position bought at 38.10:
# cash +1560.00 - 0.39 = +1559.61; realized (39.00 - 38.10) x 40 - 0.39 = 35.61; flat after.
SELL_FILL = {
    "schemaVersion": 1,
    "type": "FillSettled",
    "accountId": "acc-42",
    "sequence": 9,
    "entryId": "acc-42:9",
    "currency": "BRL",
    "tradeId": "trd-0100",
    "orderId": "ord-0008",
    "symbol": "PETR4",
    "side": "SELL",
    "quantity": "40",
    "price": "39.00",
    "fees": "0.39",
    "cashDelta": "1559.61",
    "positionDelta": "-40",
    "cashHoldReleased": "0",
    "sharesHoldReleased": "40",
    "positionQuantity": "0",
    "averagePrice": None,
    "realizedPnl": "35.61",
    "eventTime": "2026-01-02T18:00:00Z",
}


def test_fill_settled_wire_form() -> None:
    assert wire(FILL_SETTLED) == {
        "schemaVersion": 1,
        "type": "FillSettled",
        "accountId": "acc-42",
        "sequence": 3,
        "entryId": "acc-42:3",
        "currency": "BRL",
        "tradeId": "trd-0001",
        "orderId": "ord-0001",
        "symbol": "PETR4",
        "side": "BUY",
        "quantity": "40",
        "price": "38.10",
        "fees": "0.38",
        "cashDelta": "-1524.38",
        "positionDelta": "40",
        "cashHoldReleased": "1524.80",
        "sharesHoldReleased": "0",
        "positionQuantity": "40",
        "averagePrice": "38.10",
        "realizedPnl": "0",
        "settlementDate": None,
        "eventTime": "2026-01-02T13:30:02.040000Z",
    }


def test_funds_released_wire_form() -> None:
    assert wire(FUNDS_RELEASED) == {
        "schemaVersion": 1,
        "type": "FundsReleased",
        "accountId": "acc-42",
        "sequence": 4,
        "entryId": "acc-42:4",
        "currency": "BRL",
        "orderId": "ord-0003",
        "amount": "1906.00",
        "reason": "ORDER_CANCELLED",
        "eventTime": "2026-01-02T13:31:00.005000Z",
    }


def test_sell_fill_that_flattens_the_position_is_valid() -> None:
    decoded = decode(SELL_FILL)
    assert isinstance(decoded, FillSettled)
    assert decoded.side is Side.SELL
    assert decoded.cash_delta == Decimal("1559.61")
    assert decoded.realized_pnl == Decimal("35.61")
    assert decoded.average_price is None


def test_fees_default_to_zero() -> None:
    decoded = decode(changed(FILL_SETTLED, fees=DROP, cashDelta="-1524.00"))
    assert isinstance(decoded, FillSettled)
    assert decoded.fees == Decimal("0")


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        (
            changed(FILL_SETTLED, cashDelta="-1524.00"),
            "cashDelta",
            "a BUY of 40 at 38.10 with fees 0.38 moves cash by -1524.38",
        ),
        (
            changed(FILL_SETTLED, cashDelta="1524.38"),
            "cashDelta",
            "moves cash by -1524.38",
        ),
        (
            changed(FILL_SETTLED, positionDelta="-40"),
            "positionDelta",
            "a BUY of 40 moves the position by 40",
        ),
        (changed(FILL_SETTLED, sharesHoldReleased="40"), "sharesHoldReleased", "0 on a BUY"),
        (changed(FILL_SETTLED, averagePrice=None), "averagePrice", "is null exactly when"),
        (changed(FILL_SETTLED, fees="-0.38"), "fees", "must not be negative"),
        (changed(FILL_SETTLED, price=38.1), "price", "got a float"),
        (changed(FILL_SETTLED, cashDelta=-1524.38), "cashDelta", "got a float"),
        (changed(FILL_SETTLED, realizedPnl=DROP), "realizedPnl", "Field required"),
        ({**SELL_FILL, "sharesHoldReleased": "30"}, "sharesHoldReleased", "exactly its quantity"),
        ({**SELL_FILL, "cashHoldReleased": "1.00"}, "cashHoldReleased", "0 on a SELL"),
        ({**SELL_FILL, "positionDelta": "40"}, "positionDelta", "moves the position by -40"),
        ({**SELL_FILL, "averagePrice": "38.10"}, "averagePrice", "is null exactly when"),
        ({**SELL_FILL, "positionQuantity": "-40"}, "positionQuantity", "must not be negative"),
    ],
)
def test_fill_that_disagrees_with_its_trade_names_the_field(
    payload: dict[str, Any], field: str, says: str
) -> None:
    error = rejection(payload)
    assert error.fields == [field]
    assert says in error.problems[field]


def test_account_opened_must_be_entry_zero() -> None:
    error = rejection(changed(ACCOUNT_OPENED, sequence=3))
    assert error.fields == ["sequence"]
    assert "entry 0" in error.problems["sequence"]


def test_currency_is_upper_cased() -> None:
    decoded = decode(changed(CASH_DEPOSITED, currency="usdt"))
    assert isinstance(decoded, CashDeposited)
    assert decoded.currency == "USDT"


@pytest.mark.parametrize(
    ("example", "changes", "field"),
    [
        (CASH_DEPOSITED, {"amount": "-100"}, "amount"),
        (CASH_DEPOSITED, {"amount": "0"}, "amount"),
        (CASH_DEPOSITED, {"amount": 100000.0}, "amount"),
        (CASH_DEPOSITED, {"currency": "R$"}, "currency"),
        (CASH_DEPOSITED, {"currency": DROP}, "currency"),
        (CASH_WITHDRAWN, {"sequence": -1}, "sequence"),
        (CASH_WITHDRAWN, {"entryId": ""}, "entryId"),
        (CASH_WITHDRAWN, {"accountId": DROP}, "accountId"),
        (FUNDS_HELD, {"orderId": DROP}, "orderId"),
        (FUNDS_RELEASED, {"reason": "BORED"}, "reason"),
        (SHARES_HELD, {"quantity": "-40"}, "quantity"),
        (SHARES_HELD, {"symbol": "PETR 4"}, "symbol"),
        (SHARES_RELEASED, {"reason": DROP}, "reason"),
    ],
)
def test_invalid_ledger_entry_names_the_field(
    example: Message, changes: dict[str, Any], field: str
) -> None:
    assert rejection(changed(example, **changes)).fields == [field]


def test_hold_release_reasons() -> None:
    assert [reason.value for reason in HoldReleaseReason] == [
        "ORDER_FILLED",
        "ORDER_CANCELLED",
        "ORDER_EXPIRED",
        "ORDER_REJECTED",
        "ORDER_AMENDED",
    ]
