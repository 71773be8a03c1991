"""Tape lines (``brokerflow match`` format) to wire commands."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from brokerflow.errors import SchemaError
from brokerflow.exchange.io import EPOCH, command_from_tape_line, commands_from_tape
from brokerflow.schemas import AmendOrder, CancelOrder, CloseSession, PlaceOrder, SetReferencePrice


def test_new_line_becomes_a_place_order_with_the_replays_defaults() -> None:
    line = (
        '{"op":"new","orderId":"o1","accountId":"a1","symbol":"petr4","side":"BUY",'
        '"type":"LIMIT","quantity":100,"price":"38.52"}'
    )
    (command,) = commands_from_tape([line])
    assert command == PlaceOrder(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=Decimal(100),
        price=Decimal("38.52"),
        event_time=EPOCH,
    )


def test_cancel_amend_reference_and_close_lines() -> None:
    t = "2026-01-02T13:00:00Z"
    cancel, amend, reference, close = commands_from_tape(
        [
            {"op": "cancel", "orderId": "o1", "symbol": "PETR4", "eventTime": t},
            {"op": "amend", "orderId": "o1", "symbol": "PETR4", "quantity": 50},
            {"op": "reference", "symbol": "PETR4", "price": "38.40"},
            {"op": "close", "symbol": "PETR4"},
        ]
    )
    assert isinstance(cancel, CancelOrder)
    assert cancel.event_time == datetime(2026, 1, 2, 13, tzinfo=UTC)
    assert isinstance(amend, AmendOrder)
    assert amend.quantity == Decimal(50)
    assert amend.price is None
    assert isinstance(reference, SetReferencePrice)
    assert reference.price == Decimal("38.40")
    assert isinstance(close, CloseSession)
    assert close.session_date is None


def test_close_without_symbol_closes_every_symbol_seen_in_order_of_first_use() -> None:
    lines = [
        {"op": "reference", "symbol": "VALE3", "price": "60"},
        {"op": "reference", "symbol": "PETR4", "price": "38"},
        {"op": "reference", "symbol": "VALE3", "price": "61"},
        {"op": "close"},
    ]
    closes = commands_from_tape(lines)[3:]
    assert [(c.type, c.symbol) for c in closes] == [
        ("CloseSession", "VALE3"),
        ("CloseSession", "PETR4"),
    ]


def test_messages_pass_through_and_blank_lines_are_skipped() -> None:
    close = CloseSession(symbol="PETR4", session_date=date(2026, 1, 2), event_time=EPOCH)
    assert commands_from_tape(["", close, "  "]) == [close]


def test_a_float_is_refused_by_the_schema_and_an_unknown_op_is_an_error() -> None:
    with pytest.raises(SchemaError, match="price"):
        command_from_tape_line(
            {"op": "reference", "symbol": "PETR4", "price": 38.4}  # a JSON float
        )
    with pytest.raises(ValueError, match="op"):
        command_from_tape_line({"op": "fill"})
