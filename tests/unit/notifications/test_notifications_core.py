"""Order events -> the notification a user gets, and the socket message it becomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.notifications.core import (
    SEQUENCE_PLACEHOLDER,
    OrderOwner,
    fill_key,
    next_retry_wait,
    order_update,
    socket_payload,
)
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.ledger import FillSettled
from brokerflow.schemas.orders import (
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
    Side,
)
from brokerflow.settings import Settings

T = datetime(2026, 6, 25, 13, 30, tzinfo=UTC)
ANA = OrderOwner("u-ana", "acc-ana", Side.BUY)


def test_a_fill_carries_its_own_last_quantity_price_and_execution() -> None:
    event = OrderPartiallyFilled(
        order_id="o-1",
        account_id="acc-ana",
        symbol="PETR4",
        sequence=7,
        trade_id="PETR4-T3",
        last_price=Decimal("38.50"),
        last_quantity=Decimal("100"),
        filled_quantity=Decimal("100"),
        leaves_quantity=Decimal("200"),
        event_time=T,
    )
    note = order_update(event, ANA)
    assert note is not None
    assert (note.notification_id, note.user_id, note.status.value) == (
        "o-1:7",
        "u-ana",
        "PARTIALLY_FILLED",
    )
    assert (note.last_quantity, note.last_price, note.execution_id) == (
        Decimal("100"),
        Decimal("38.50"),
        "PETR4-T3",
    )
    assert note.message == "BUY 100 PETR4 at 38.50: 100 filled, 200 open"
    sent = json.loads(socket_payload(note).replace(SEQUENCE_PLACEHOLDER, '"sequence":12'))
    assert {
        k: sent[k]
        for k in (
            "type",
            "sequence",
            "orderId",
            "status",
            "filledQty",
            "leavesQty",
            "lastPrice",
            "lastQty",
            "executionId",
            "eventTime",
        )
    } == {
        "type": "ORDER_UPDATE",
        "sequence": 12,
        "orderId": "o-1",
        "status": "PARTIALLY_FILLED",
        "filledQty": "100",
        "leavesQty": "200",
        "lastPrice": "38.50",
        "lastQty": "100",
        "executionId": "PETR4-T3",
        "eventTime": "2026-06-25T13:30:00.000000Z",
    }


def test_a_cancel_that_lost_its_race_keeps_the_orders_status() -> None:
    lost = OrderRejected(
        order_id="o-1",
        account_id="acc-ana",
        symbol="PETR4",
        sequence=9,
        reason="UNKNOWN_ORDER",
        detail="CancelOrder: o-1 is not open",
        filled_quantity=Decimal("300"),
        leaves_quantity=Decimal("0"),
        event_time=T,
    )
    note = order_update(lost, ANA)
    assert note is not None
    assert (note.status.value, note.reason) == ("FILLED", "CANCEL_REJECTED: UNKNOWN_ORDER")
    refused = order_update(
        lost.model_copy(
            update={
                "detail": "PlaceOrder: tick",
                "reason": "TICK_SIZE",
                "filled_quantity": Decimal(0),
            }
        ),
        ANA,
    )
    assert refused is not None
    assert (refused.status.value, refused.reason) == ("REJECTED", "TICK_SIZE")


def test_a_user_cancel_says_so_and_submissions_are_not_notified() -> None:
    cancelled = OrderCancelled(
        order_id="o-1",
        account_id="acc-ana",
        symbol="PETR4",
        sequence=4,
        reason="USER",
        cancelled_quantity=Decimal("100"),
        filled_quantity=Decimal("0"),
        leaves_quantity=Decimal("0"),
        event_time=T,
    )
    note = order_update(cancelled, ANA)
    assert note is not None
    assert (note.status.value, note.reason, note.message) == (
        "CANCELLED",
        "USER",
        "Your BUY order for PETR4 is cancelled",
    )
    submitted = example_of(OrderSubmitted)
    assert order_update(submitted, ANA) is None


def test_a_refused_push_waits_1_2_4_8_seconds_then_is_given_up() -> None:
    backoff = Settings().notify_retry_backoff_s
    waits = [next_retry_wait(attempts, backoff) for attempts in range(1, 7)]
    assert waits == [1.0, 2.0, 4.0, 8.0, None, None]
    with pytest.raises(ValueError, match="refused try"):
        next_retry_wait(0, backoff)


def test_the_backoff_is_read_from_the_environment_and_must_be_positive() -> None:
    assert Settings(NOTIFY_RETRY_BACKOFF_S="0.5, 3").notify_retry_backoff_s == [0.5, 3.0]
    with pytest.raises(ValueError, match="positive number of seconds"):
        Settings(NOTIFY_RETRY_BACKOFF_S="1,0")


def test_a_fill_says_the_position_it_left_and_other_updates_do_not() -> None:
    fill = example_of(OrderFilled)
    settled = example_of(FillSettled).model_copy(
        update={"order_id": fill.order_id, "trade_id": fill.trade_id}
    )
    assert fill_key(fill) == fill_key(settled) == (fill.order_id, fill.trade_id)
    note = order_update(fill, ANA, Decimal("140"))
    assert note is not None
    assert note.position_quantity == Decimal("140")
    assert (
        json.loads(socket_payload(note).replace(SEQUENCE_PLACEHOLDER, '"sequence":1'))[
            "positionQty"
        ]
        == "140"
    )
    cancelled = example_of(OrderCancelled)
    assert fill_key(cancelled) is None
    quiet = order_update(cancelled, ANA, Decimal("140"))
    assert quiet is not None
    assert quiet.position_quantity is None
