"""An order's history from its events, and its state at an instant, exact to the event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokerflow.projections.folds import new_order_document
from brokerflow.projections.history import history_entries, initial_entry, state_at
from brokerflow.schemas.accounts import RequestOrder
from brokerflow.schemas.orders import (
    OrderAccepted,
    OrderCancelled,
    OrderPartiallyFilled,
    OrderRejected,
)

T0 = datetime(2026, 6, 25, 10, 32, 47, 123000, tzinfo=UTC)
D = Decimal


def placed() -> dict:
    request = RequestOrder(
        request_id="o-1",
        order_id="o-1",
        account_id="acc-1",
        symbol="PETR4",
        side="BUY",
        order_type="LIMIT",
        quantity=D(300),
        price=D("38.50"),
        event_time=T0,
    )
    return new_order_document(request, "u-1")


def common(sequence: int, seconds: float, filled: int, leaves: int) -> dict:
    return {
        "order_id": "o-1",
        "account_id": "acc-1",
        "symbol": "PETR4",
        "sequence": sequence,
        "filled_quantity": D(filled),
        "leaves_quantity": D(leaves),
        "event_time": T0 + timedelta(seconds=seconds),
    }


EVENTS = [
    OrderAccepted(
        **common(10, 0.1, 0, 300),
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=D(300),
        price=D("38.50"),
    ),
    OrderPartiallyFilled(
        **common(12, 2.0, 100, 200),
        trade_id="PETR4-T4",
        last_price=D("38.50"),
        last_quantity=D(100),
    ),
    # A cancel that lost its race: not a state change.
    OrderRejected(
        **common(13, 2.5, 100, 200), reason="UNKNOWN_ORDER", detail="CancelOrder: not open"
    ),
    OrderPartiallyFilled(
        **common(15, 2.0, 250, 50), trade_id="PETR4-T5", last_price=D("38.40"), last_quantity=D(150)
    ),
    OrderCancelled(**common(17, 5.0, 250, 0), reason="USER", cancelled_quantity=D(50)),
]


def test_one_entry_per_state_change_with_the_state_after_it() -> None:
    entries = history_entries(placed(), EVENTS)
    assert [
        (
            e["_id"],
            e["type"],
            e["state"]["status"],
            e["state"]["filledQuantity"],
            e["state"]["leavesQuantity"],
        )
        for e in entries
    ] == [
        ("o-1:10", "OrderAccepted", "OPEN", "0", "300"),
        ("o-1:12", "OrderPartiallyFilled", "PARTIALLY_FILLED", "100", "200"),
        ("o-1:15", "OrderPartiallyFilled", "PARTIALLY_FILLED", "250", "50"),
        ("o-1:17", "OrderCancelled", "CANCELLED", "250", "0"),
    ]
    # (100 x 38.50 + 150 x 38.40) / 250, to 8 places
    assert entries[2]["state"]["averagePrice"] == "38.44000000"
    assert (entries[1]["executionId"], entries[1]["lastQuantity"]) == ("PETR4-T4", "100")
    # Folded again from a document already past them (a replay): nothing new.
    assert history_entries(entries[-1]["state"] | {"_id": "o-1", "lastSequence": 17}, EVENTS) == []


def test_the_state_at_an_instant_before_at_between_and_after_events() -> None:
    document = placed()
    events = history_entries(document, EVENTS)
    entries = [initial_entry(document, events[0]), *events]

    def status_at(offset_s: float) -> tuple[str, str] | None:
        state = state_at(entries, T0 + timedelta(seconds=offset_s))
        return None if state is None else (state["status"], state["filledQuantity"])

    assert status_at(-0.001) is None  # before it was placed
    assert status_at(0) == ("PENDING", "0")  # the request's own instant
    assert status_at(0.05) == ("PENDING", "0")
    assert status_at(0.1) == ("OPEN", "0")  # exactly at the event: included
    # Two fills at the same instant (2.0 s): both, in sequence order.
    assert status_at(2.0) == ("PARTIALLY_FILLED", "250")
    assert status_at(1.999999) == ("OPEN", "0")
    assert status_at(4.999) == ("PARTIALLY_FILLED", "250")
    assert status_at(5.0) == ("CANCELLED", "250")
    assert status_at(3600) == ("CANCELLED", "250")
