"""Order commands and events on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from brokerflow.errors import SchemaError
from brokerflow.schemas import (
    AmendOrder,
    OrderStatus,
    OrderSubmitted,
    PlaceOrder,
    decode,
)
from brokerflow.schemas.examples import (
    AMEND_ORDER,
    ORDER_AMENDED,
    ORDER_FILLED,
    ORDER_SUBMITTED,
    PLACE_ORDER,
)

from .support import DROP, changed, rejection, wire


def test_place_order_wire_form() -> None:
    assert wire(PLACE_ORDER) == {
        "schemaVersion": 1,
        "type": "PlaceOrder",
        "orderId": "ord-0001",
        "accountId": "acc-42",
        "symbol": "PETR4",
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "quantity": "100",
        "price": "38.12",
        "idempotencyKey": "6f1d0c2e-5b1a-4c1e-9a55-0d4f3b9f2a10",
        "eventTime": "2026-01-02T13:30:00.123000Z",
    }


def test_order_filled_wire_form() -> None:
    assert wire(ORDER_FILLED) == {
        "schemaVersion": 1,
        "type": "OrderFilled",
        "orderId": "ord-0001",
        "accountId": "acc-42",
        "symbol": "PETR4",
        "status": "FILLED",
        "sequence": 5,
        "filledQuantity": "100",
        "leavesQuantity": "0",
        "tradeId": "trd-0002",
        "lastPrice": "38.11",
        "lastQuantity": "60",
        "eventTime": "2026-01-02T13:30:03.000000Z",
        "receiveTime": None,
    }


def test_place_order_normalizes_symbol_offset_time_and_exponent() -> None:
    decoded = decode(
        changed(
            PLACE_ORDER,
            symbol=" petr4 ",
            eventTime="2026-01-02T10:30:00.123-03:00",
            quantity="1E+2",
        )
    )
    assert isinstance(decoded, PlaceOrder)
    assert decoded.symbol == "PETR4"
    assert decoded.event_time == datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC)
    assert decoded.quantity == Decimal("100")
    assert wire(decoded)["quantity"] == "100"
    assert wire(decoded)["eventTime"] == "2026-01-02T13:30:00.123000Z"


def test_a_time_before_year_1000_survives_the_round_trip() -> None:
    decoded = decode(changed(PLACE_ORDER, eventTime="0999-01-01T00:00:00Z"))
    assert wire(decoded)["eventTime"] == "0999-01-01T00:00:00.000000Z"
    assert decode(wire(decoded)) == decoded


def test_integer_quantity_is_exact_and_accepted() -> None:
    decoded = decode(changed(PLACE_ORDER, quantity=100))
    assert isinstance(decoded, PlaceOrder)
    assert decoded.quantity == Decimal("100")


def test_market_order_without_price_is_valid() -> None:
    decoded = decode(changed(PLACE_ORDER, orderType="MARKET", price=None))
    assert isinstance(decoded, PlaceOrder)
    assert decoded.price is None


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"price": 38.12}, "price", "got a float"),
        ({"quantity": 100.0}, "quantity", "got a float"),
        ({"quantity": "-100"}, "quantity", "greater than zero"),
        ({"quantity": "0"}, "quantity", "greater than zero"),
        ({"price": "NaN"}, "price", "not a finite decimal"),
        ({"price": "thirty"}, "price", "not a decimal number"),
        ({"price": True}, "price", "boolean"),
        ({"price": "1e999999999"}, "price", "out of range"),
        ({"quantity": "0." + "0" * 60 + "1"}, "quantity", "out of range"),
        ({"price": None}, "price", "a LIMIT order needs a price"),
        ({"price": DROP}, "price", "a LIMIT order needs a price"),
        ({"orderType": "MARKET"}, "price", "a MARKET order takes no price"),
        ({"orderType": "STOP"}, "orderType", "LIMIT"),
        ({"side": "buy"}, "side", "BUY"),
        ({"symbol": "PETR 4"}, "symbol", "not a symbol"),
        ({"symbol": "PETR\uff14"}, "symbol", "not a symbol"),
        ({"orderId": ""}, "orderId", "at least 1 character"),
        ({"orderId": DROP}, "orderId", "Field required"),
        ({"eventTime": "2026-01-02T13:30:00"}, "eventTime", "no time zone"),
        ({"eventTime": "yesterday"}, "eventTime", "not an ISO 8601 timestamp"),
        ({"eventTime": "0001-01-01T00:00:00+01:00"}, "eventTime", "out of range in UTC"),
    ],
)
def test_invalid_place_order_names_the_field(
    changes: dict[str, Any], field: str, says: str
) -> None:
    error = rejection(changed(PLACE_ORDER, **changes))
    assert error.fields == [field]
    assert says in error.problems[field]


def test_amend_without_a_change_names_quantity() -> None:
    error = rejection(changed(AMEND_ORDER, quantity=None))
    assert error.fields == ["quantity"]
    assert "needs a new quantity, a new price, or both" in str(error)


def test_amend_to_a_new_price_only_is_valid() -> None:
    decoded = decode(changed(AMEND_ORDER, quantity=None, price="38.05"))
    assert isinstance(decoded, AmendOrder)
    assert (decoded.quantity, decoded.price) == (None, Decimal("38.05"))


@pytest.mark.parametrize(
    ("example", "changes", "field"),
    [
        (ORDER_FILLED, {"status": "OPEN"}, "status"),
        (ORDER_FILLED, {"sequence": -1}, "sequence"),
        (ORDER_FILLED, {"leavesQuantity": "-1"}, "leavesQuantity"),
        (ORDER_FILLED, {"lastPrice": 38.11}, "lastPrice"),
        (ORDER_SUBMITTED, {"status": "OPEN"}, "status"),
        (ORDER_AMENDED, {"keptPriority": "perhaps"}, "keptPriority"),
        (ORDER_FILLED, {"receiveTime": "2026-01-02T13:30:03"}, "receiveTime"),
    ],
)
def test_invalid_order_event_names_the_field(
    example: Any, changes: dict[str, Any], field: str
) -> None:
    assert rejection(changed(example, **changes)).fields == [field]


def test_status_is_implied_by_the_event_type() -> None:
    payload = changed(ORDER_SUBMITTED, status=DROP)
    decoded = decode(payload)
    assert isinstance(decoded, OrderSubmitted)
    assert decoded.status is OrderStatus.PENDING


def test_class_level_decoding_names_the_field_too() -> None:
    with pytest.raises(SchemaError) as info:
        PlaceOrder.from_json_bytes(b'{"type": "PlaceOrder", "schemaVersion": 1}')
    assert "orderId" in info.value.fields
    assert info.value.model == "PlaceOrder"


def test_messages_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        PLACE_ORDER.quantity = Decimal("1")  # type: ignore[misc]
