"""The order pieces with no I/O: the idempotency key's source, the PENDING document, the answer
for an order already placed, and the read model as the API shows it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.api.errors import ApiError
from brokerflow.api.orders import (
    answer_from_document,
    new_order_document,
    order_view,
    resolve_idempotency_key,
)
from brokerflow.schemas.accounts import RequestOrder
from brokerflow.schemas.orders import OrderType, Side, TimeInForce

REQUEST = RequestOrder(
    request_id="ord-1",
    order_id="ord-1",
    account_id="acct-1",
    symbol="PETR4",
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.DAY,
    quantity=Decimal("100"),
    price=Decimal("38.12"),
    idempotency_key="k-1",
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)


def test_the_key_comes_from_the_header_or_the_body() -> None:
    assert resolve_idempotency_key(None, None) is None
    assert resolve_idempotency_key("k", None) == "k"
    assert resolve_idempotency_key(None, "k") == "k"
    assert resolve_idempotency_key("k", "k") == "k"
    with pytest.raises(ApiError) as caught:
        resolve_idempotency_key("k", "j")
    assert (caught.value.status, caught.value.code) == (400, "IDEMPOTENCY_KEY_MISMATCH")


def test_the_pending_document() -> None:
    assert new_order_document(REQUEST, "user-1") == {
        "_id": "ord-1",
        "orderId": "ord-1",
        "userId": "user-1",
        "accountId": "acct-1",
        "symbol": "PETR4",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "DAY",
        "quantity": "100",
        "price": "38.12",
        "status": "PENDING",
        "filledQuantity": "0",
        "leavesQuantity": "100",
        "averagePrice": None,
        "fills": [],
        "rejectReason": None,
        "rejectMessage": None,
        "idempotencyKey": "k-1",
        "createdAt": "2026-01-02T13:30:00.123000Z",
        "updatedAt": "2026-01-02T13:30:00.123000Z",
        "lastSequence": -1,
        "marketPrice": None,
    }


@pytest.mark.parametrize(
    ("status", "answer"),
    [("PENDING", "PENDING"), ("OPEN", "ACCEPTED"), ("FILLED", "ACCEPTED")],
)
def test_an_order_already_placed_answers_with_its_state(status: str, answer: str) -> None:
    document = {**new_order_document(REQUEST, "user-1"), "status": status}
    stored = answer_from_document(document)
    assert stored.status == 202
    assert stored.body == {
        "orderId": "ord-1",
        "status": answer,
        "timestamp": "2026-01-02T13:30:00.123000Z",
    }
    assert stored.headers == {"Location": "/api/v1/orders/ord-1"}


def test_an_order_already_refused_answers_with_its_refusal() -> None:
    document = {
        **new_order_document(REQUEST, "user-1"),
        "status": "REJECTED",
        "rejectReason": "INSUFFICIENT_BUYING_POWER",
        "rejectMessage": "short by 2812.00",
    }
    stored = answer_from_document(document)
    assert stored.status == 403
    assert stored.body == {
        "code": "INSUFFICIENT_BUYING_POWER",
        "message": "short by 2812.00",
        "orderId": "ord-1",
    }


def test_a_partly_filled_order_as_the_api_shows_it() -> None:
    document = {
        **new_order_document(REQUEST, "user-1"),
        "status": "PARTIALLY_FILLED",
        "filledQuantity": "60",
        "leavesQuantity": "40",
        "averagePrice": "38.1133",
        "fills": [
            {
                "executionId": "PETR4-T1",
                "price": "38.10",
                "quantity": "20",
                "fees": "0.23",
                "time": "2026-01-02T13:30:01.000000Z",
            },
            {
                "executionId": "PETR4-T2",
                "price": "38.12",
                "quantity": "40",
                "fees": "0.46",
                "time": "2026-01-02T13:30:02.500000Z",
            },
        ],
        "updatedAt": "2026-01-02T13:30:02.500000Z",
        "lastSequence": 7,
    }
    view = order_view(document).model_dump(mode="json", by_alias=True)
    assert view == {
        "orderId": "ord-1",
        "symbol": "PETR4",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "DAY",
        "quantity": "100",
        "price": "38.12",
        "status": "PARTIALLY_FILLED",
        "filledQuantity": "60",
        "leavesQuantity": "40",
        "averagePrice": "38.1133",
        "fills": [
            {
                "executionId": "PETR4-T1",
                "price": "38.10",
                "quantity": "20",
                "fees": "0.23",
                "time": "2026-01-02T13:30:01.000000Z",
            },
            {
                "executionId": "PETR4-T2",
                "price": "38.12",
                "quantity": "40",
                "fees": "0.46",
                "time": "2026-01-02T13:30:02.500000Z",
            },
        ],
        "createdAt": "2026-01-02T13:30:00.123000Z",
        "updatedAt": "2026-01-02T13:30:02.500000Z",
        "rejectReason": None,
        "rejectMessage": None,
    }


def test_leaves_quantity_defaults_to_what_is_not_filled() -> None:
    document = {**new_order_document(REQUEST, "user-1"), "filledQuantity": "30"}
    del document["leavesQuantity"]
    assert order_view(document).leaves_quantity == Decimal("70")
