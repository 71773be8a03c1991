"""What "the same request" means for an idempotency key, and the order id a key stands for."""

from __future__ import annotations

import uuid
from decimal import Decimal

from brokerflow.api.idempotency import body_hash, canonical, order_id_for
from brokerflow.schemas.orders import OrderType, Side

BODY = {
    "symbol": "PETR4",
    "side": Side.BUY,
    "type": OrderType.LIMIT,
    "quantity": Decimal("100"),
    "price": Decimal("38.12"),
    "time_in_force": "GTC",
}


def test_equal_amounts_written_differently_are_the_same_request() -> None:
    same = {**BODY, "quantity": Decimal("100.00"), "price": Decimal("38.120")}
    assert body_hash("POST /orders", same) == body_hash("POST /orders", BODY)


def test_key_order_and_enum_or_text_do_not_matter() -> None:
    reordered = dict(reversed(list(BODY.items())))
    as_text = {**BODY, "side": "BUY", "type": "LIMIT"}
    assert body_hash("op", reordered) == body_hash("op", BODY)
    assert body_hash("op", as_text) == body_hash("op", BODY)


def test_any_real_change_is_another_request() -> None:
    digest = body_hash("op", BODY)
    assert body_hash("op", {**BODY, "quantity": Decimal("101")}) != digest
    assert body_hash("op", {**BODY, "price": None}) != digest
    assert body_hash("op", {**BODY, "side": Side.SELL}) != digest
    assert body_hash("other op", BODY) != digest


def test_canonical_decimals() -> None:
    assert canonical(Decimal("1E+2")) == "100"
    assert canonical(Decimal("0.000")) == "0"
    assert canonical(Decimal("-0")) == "0"
    assert canonical(Decimal("38.1200")) == "38.12"
    assert canonical({"a": [Decimal("1.0"), Side.SELL]}) == {"a": ["1", "SELL"]}


def test_order_id_is_stable_per_user_and_key() -> None:
    # Pinned: a changed namespace or format would give a retried key a second order id.
    assert order_id_for("user-1", "key-1") == "f20dab9b-7d2a-53cf-b35d-00defb3634f0"
    assert uuid.UUID(order_id_for("user-1", "key-1")).version == 5
    assert order_id_for("user-2", "key-1") != order_id_for("user-1", "key-1")
    assert order_id_for("user-1", "key-2") != order_id_for("user-1", "key-1")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert order_id_for("ab", "c") != order_id_for("a", "bc")
