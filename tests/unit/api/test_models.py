"""Request validation: camelCase only, decimals as strings, the cross-field rules, named fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from brokerflow.api.models import (
    AmendRequest,
    CustodyTransferRequest,
    FundingRequest,
    OrderRequest,
    SignupRequest,
)
from brokerflow.schemas.orders import TimeInForce

LIMIT = {"symbol": "PETR4", "side": "BUY", "type": "LIMIT", "quantity": "100", "price": "38.12"}


def _fields(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [".".join(str(p) for p in error["loc"]) for error in caught.value.errors()]


def test_a_limit_order() -> None:
    order = OrderRequest.model_validate({**LIMIT, "symbol": "petr4"})
    assert order.symbol == "PETR4"
    assert order.quantity == Decimal("100")
    assert order.price == Decimal("38.12")
    assert order.time_in_force is TimeInForce.GTC
    assert order.idempotency_key is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": None}, "price"),  # LIMIT needs a price
        ({"type": "MARKET"}, "price"),  # MARKET takes none
        ({"quantity": 100}, "quantity"),  # a JSON number
        ({"quantity": 100.5}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "1e5"}, "quantity"),
        ({"quantity": " 1"}, "quantity"),
        ({"quantity": "1234567890123456"}, "quantity"),  # 16 integer digits
        ({"price": "1.1234567890123"}, "price"),  # 13 decimal places
        ({"side": "buy"}, "side"),
        ({"timeInForce": "FOREVER"}, "timeInForce"),
        ({"symbol": "PETR 4"}, "symbol"),
        ({"idempotencyKey": "has space"}, "idempotencyKey"),
        ({"idempotencyKey": "k" * 65}, "idempotencyKey"),
        ({"qty": "1"}, "qty"),  # unknown field
        ({"time_in_force": "DAY"}, "time_in_force"),  # snake_case is not the wire name
    ],
)
def test_a_bad_order_names_its_field(change: dict[str, Any], field: str) -> None:
    data = {**LIMIT, **change}
    data = {key: value for key, value in data.items() if value is not None}
    assert field in _fields(OrderRequest, data)


def test_a_market_order_has_no_price() -> None:
    order = OrderRequest.model_validate(
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.00001"}
    )
    assert order.price is None
    assert order.quantity == Decimal("0.00001")


def test_signup_rules() -> None:
    assert SignupRequest.model_validate({"username": "ana.b-1", "password": "12345678"})
    assert _fields(SignupRequest, {"username": "ab", "password": "12345678"}) == ["username"]
    assert _fields(SignupRequest, {"username": "-ana", "password": "12345678"}) == ["username"]
    assert _fields(SignupRequest, {"username": "ana", "password": "1234567"}) == ["password"]
    assert _fields(SignupRequest, {"username": "ana", "password": "x" * 129}) == ["password"]
    assert _fields(SignupRequest, {"username": "anabelle", "password": "ANABELLE"}) == ["password"]
    assert _fields(SignupRequest, {"username": "ana", "password": " " * 9}) == ["password"]


def test_funding_and_custody() -> None:
    deposit = FundingRequest.model_validate({"currency": "brl", "amount": "10.50"})
    assert (deposit.currency, deposit.amount) == ("BRL", Decimal("10.50"))
    assert _fields(FundingRequest, {"currency": "BRL", "amount": 10}) == ["amount"]
    assert _fields(FundingRequest, {"currency": "R$", "amount": "10"}) == ["currency"]
    custody = CustodyTransferRequest.model_validate({"symbol": "VALE3", "quantity": "10"})
    assert custody.average_price is None
    assert _fields(CustodyTransferRequest, {"symbol": "VALE3"}) == ["quantity"]


def test_an_amend_changes_something() -> None:
    assert AmendRequest.model_validate({"price": "38.10"}).quantity is None
    assert _fields(AmendRequest, {}) == ["quantity"]
