"""Trades printed by our matching engine."""

from __future__ import annotations

from typing import Any

import pytest

from brokerflow.schemas import Side, TradeExecuted, decode
from brokerflow.schemas.examples import TRADE_EXECUTED

from .support import DROP, changed, rejection, wire


def test_trade_executed_wire_form() -> None:
    assert wire(TRADE_EXECUTED) == {
        "schemaVersion": 1,
        "type": "TradeExecuted",
        "tradeId": "trd-0001",
        "symbol": "PETR4",
        "sequence": 4,
        "price": "38.10",
        "quantity": "40",
        "aggressorSide": "BUY",
        "takerOrderId": "ord-0001",
        "makerOrderId": "ord-0009",
        "buyOrderId": "ord-0001",
        "sellOrderId": "ord-0009",
        "buyAccountId": "acc-42",
        "sellAccountId": "acc-7",
        "eventTime": "2026-01-02T13:30:02.000000Z",
    }


def test_trade_between_anonymous_accounts_is_valid() -> None:
    decoded = decode(changed(TRADE_EXECUTED, buyAccountId=DROP, sellAccountId=None))
    assert isinstance(decoded, TradeExecuted)
    assert (decoded.buy_account_id, decoded.sell_account_id) == (None, None)
    assert decoded.aggressor_side is Side.BUY


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": 38.1}, "price"),
        ({"price": "0"}, "price"),
        ({"quantity": "-40"}, "quantity"),
        ({"aggressorSide": None}, "aggressorSide"),
        ({"makerOrderId": DROP}, "makerOrderId"),
        ({"sequence": "four"}, "sequence"),
        ({"eventTime": "2026-01-02T13:30:02"}, "eventTime"),
    ],
)
def test_invalid_trade_executed_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert rejection(changed(TRADE_EXECUTED, **changes)).fields == [field]
