"""Normalized market ticks: Trade, BestBidAsk, Quote."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from brokerflow.schemas import BestBidAsk, Quote, Trade, decode
from brokerflow.schemas.examples import BEST_BID_ASK, QUOTE, TRADE

from .support import DROP, changed, rejection, wire


def test_trade_wire_form() -> None:
    assert wire(TRADE) == {
        "schemaVersion": 1,
        "type": "Trade",
        "venue": "BINANCE",
        "symbol": "BTCUSDT",
        "tradeId": "5120334417",
        "price": "94112.01000000",
        "quantity": "0.00106000",
        "aggressorSide": "SELL",
        "eventTime": "2026-01-02T13:30:00.122000Z",
        "receiveTime": "2026-01-02T13:30:00.180000Z",
    }


def test_best_bid_ask_wire_form() -> None:
    assert wire(BEST_BID_ASK) == {
        "schemaVersion": 1,
        "type": "BestBidAsk",
        "venue": "BINANCE",
        "symbol": "BTCUSDT",
        "bidPrice": "94112.00000000",
        "bidQuantity": "1.20420000",
        "askPrice": "94112.01000000",
        "askQuantity": "0.31000000",
        "updateId": 400900217,
        "eventTime": "2026-01-02T13:30:00.181000Z",
        "receiveTime": "2026-01-02T13:30:00.181000Z",
    }


def test_quote_wire_form() -> None:
    assert wire(QUOTE) == {
        "schemaVersion": 1,
        "type": "Quote",
        "venue": "BRAPI",
        "symbol": "PETR4",
        "currency": "BRL",
        "lastPrice": "38.12",
        "dayHigh": "38.45",
        "dayLow": "37.9",
        "dayOpen": "38.0",
        "previousClose": "37.9",
        "volume": "41234500",
        "change": "0.22",
        "changePercent": "0.58",
        "eventTime": "2026-01-02T20:07:00.000000Z",
        "receiveTime": "2026-01-02T20:07:02.500000Z",
    }


# --- Trade -----------------------------------------------------------------------------------


def test_trade_with_unknown_aggressor_and_lower_case_venue() -> None:
    decoded = decode(changed(TRADE, aggressorSide=None, venue="binance", symbol="btcusdt"))
    assert isinstance(decoded, Trade)
    assert decoded.aggressor_side is None
    assert (decoded.venue, decoded.symbol) == ("BINANCE", "BTCUSDT")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": 94112.01}, "price"),
        ({"quantity": "-0.001"}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"aggressorSide": "TAKER"}, "aggressorSide"),
        ({"venue": "BIN ANCE"}, "venue"),
        ({"venue": ""}, "venue"),
        ({"tradeId": 5120334417}, "tradeId"),
        ({"receiveTime": DROP}, "receiveTime"),
        ({"receiveTime": "2026-01-02 13:30:00.180"}, "receiveTime"),
    ],
)
def test_invalid_trade_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert rejection(changed(TRADE, **changes)).fields == [field]


# --- BestBidAsk ------------------------------------------------------------------------------


def test_spread_is_ask_minus_bid() -> None:
    assert BEST_BID_ASK.spread == Decimal("0.01")


def test_locked_quote_with_bid_equal_to_ask_is_valid() -> None:
    decoded = decode(changed(BEST_BID_ASK, bidPrice="94112.01"))
    assert isinstance(decoded, BestBidAsk)
    assert decoded.spread == Decimal("0")


def test_one_sided_book_is_valid_and_has_no_spread() -> None:
    decoded = decode(changed(BEST_BID_ASK, askPrice=None, askQuantity=None, updateId=DROP))
    assert isinstance(decoded, BestBidAsk)
    assert decoded.ask_price is None
    assert decoded.update_id is None
    assert decoded.spread is None


def test_crossed_quote_is_rejected_naming_the_bid() -> None:
    error = rejection(changed(BEST_BID_ASK, bidPrice="94112.02"))
    assert error.fields == ["bidPrice"]
    assert error.problems["bidPrice"] == "crossed quote: bid 94112.02 is above ask 94112.01000000"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bidQuantity": None}, "bidQuantity"),
        ({"askPrice": None}, "askQuantity"),
        ({"bidPrice": "0"}, "bidPrice"),
        ({"askQuantity": "-1"}, "askQuantity"),
        ({"askQuantity": 0.31}, "askQuantity"),
        ({"bidPrice": DROP}, "bidPrice"),
        ({"updateId": -1}, "updateId"),
    ],
)
def test_invalid_best_bid_ask_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert rejection(changed(BEST_BID_ASK, **changes)).fields == [field]


# --- Quote -----------------------------------------------------------------------------------


def test_quote_with_a_loss_and_only_the_required_fields() -> None:
    payload = {
        "schemaVersion": 1,
        "type": "Quote",
        "venue": "BRAPI",
        "symbol": "VALE3",
        "currency": "brl",
        "lastPrice": "61.05",
        "change": "-0.95",
        "changePercent": "-1.53",
        "eventTime": "2026-01-02T20:07:00Z",
        "receiveTime": "2026-01-02T20:07:01Z",
    }
    decoded = decode(payload)
    assert isinstance(decoded, Quote)
    assert decoded.currency == "BRL"
    assert decoded.change == Decimal("-0.95")
    assert decoded.day_high is None


def test_day_low_above_day_high_is_rejected() -> None:
    error = rejection(changed(QUOTE, dayLow="38.50"))
    assert error.fields == ["dayLow"]
    assert error.problems["dayLow"] == "day low 38.50 is above day high 38.45"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lastPrice": 38.12}, "lastPrice"),
        ({"lastPrice": DROP}, "lastPrice"),
        ({"volume": "-1"}, "volume"),
        ({"currency": "R$"}, "currency"),
        ({"currency": "REAIS!"}, "currency"),
        ({"changePercent": 0.58}, "changePercent"),
        ({"eventTime": "2026-01-02T20:07:00"}, "eventTime"),
    ],
)
def test_invalid_quote_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert rejection(changed(QUOTE, **changes)).fields == [field]
