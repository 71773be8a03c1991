"""Closed bars: OHLCV, VWAP, aggressor split and spread per window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from brokerflow.schemas import BarClosed, BarWindow, decode
from brokerflow.schemas.examples import BAR_CLOSED

from .support import DROP, changed, rejection, wire

NO_TRADES = {
    "tradeCount": 0,
    "open": None,
    "high": None,
    "low": None,
    "close": None,
    "vwap": None,
    "volume": "0",
    "buyVolume": "0",
    "sellVolume": "0",
}


def test_bar_closed_wire_form() -> None:
    assert wire(BAR_CLOSED) == {
        "schemaVersion": 1,
        "type": "BarClosed",
        "venue": "BINANCE",
        "symbol": "BTCUSDT",
        "window": "1m",
        "windowStart": "2026-01-02T13:30:00.000000Z",
        "windowEnd": "2026-01-02T13:31:00.000000Z",
        "tradeCount": 4,
        "open": "94112.01",
        "high": "94120.00",
        "low": "94100.50",
        "close": "94110.00",
        "volume": "2.00",
        "vwap": "94110.565",
        "buyVolume": "0.75",
        "sellVolume": "1.25",
        "bboCount": 120,
        "spreadMean": "0.015",
        "spreadMax": "0.50",
        "revision": 0,
        "eventTime": "2026-01-02T13:31:00.000000Z",
        "computedTime": "2026-01-02T13:31:00.250000Z",
    }


@pytest.mark.parametrize(
    ("window", "length"),
    [
        (BarWindow.SECOND_1, timedelta(seconds=1)),
        (BarWindow.SECOND_5, timedelta(seconds=5)),
        (BarWindow.MINUTE_1, timedelta(seconds=60)),
        (BarWindow.MINUTE_5, timedelta(seconds=300)),
        (BarWindow.MINUTE_15, timedelta(seconds=900)),
        (BarWindow.HOUR_1, timedelta(seconds=3600)),
        (BarWindow.DAY_1, timedelta(seconds=86400)),
    ],
)
def test_window_duration(window: BarWindow, length: timedelta) -> None:
    assert window.duration == length


def test_one_second_bar_is_valid() -> None:
    decoded = decode(
        changed(
            BAR_CLOSED,
            window="1s",
            windowStart="2026-01-02T13:30:59Z",
            windowEnd="2026-01-02T13:31:00Z",
        )
    )
    assert isinstance(decoded, BarClosed)
    assert decoded.window is BarWindow.SECOND_1


def test_window_with_quotes_but_no_trades_is_valid() -> None:
    decoded = decode(changed(BAR_CLOSED, **NO_TRADES))
    assert isinstance(decoded, BarClosed)
    assert decoded.open is None
    assert decoded.vwap is None


def test_window_with_trades_but_no_quotes_is_valid() -> None:
    decoded = decode(changed(BAR_CLOSED, bboCount=0, spreadMean=None, spreadMax=None))
    assert isinstance(decoded, BarClosed)
    assert decoded.spread_max is None


def test_restated_bar_carries_its_revision() -> None:
    decoded = decode(changed(BAR_CLOSED, revision=1))
    assert isinstance(decoded, BarClosed)
    assert decoded.revision == 1


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"windowEnd": "2026-01-02T13:32:00Z"}, "windowEnd", "a 1m window ends 1m after"),
        ({"eventTime": "2026-01-02T13:31:00.250Z"}, "eventTime", "its window end"),
        ({"window": "2m"}, "window", "'1s'"),
        ({**NO_TRADES, "open": "94112.01"}, "open", "must be null when tradeCount is 0"),
        ({**NO_TRADES, "volume": "0.5"}, "volume", "must be 0 when tradeCount is 0"),
        ({"vwap": None}, "vwap", "is required when tradeCount is above 0"),
        ({"volume": "0", "buyVolume": "0", "sellVolume": "0"}, "volume", "must be above 0"),
        ({"close": "94120.01"}, "close", "94120.01 is outside low..high (94100.50..94120.00)"),
        ({"open": "94100.49"}, "open", "is outside low..high"),
        ({"low": "94120.01"}, "low", "low 94120.01 is above high 94120.00"),
        (
            {"buyVolume": "1.00"},
            "buyVolume",
            "buyVolume + sellVolume (2.25) exceeds volume (2.00)",
        ),
        ({"bboCount": 0}, "spreadMean", "must be null when bboCount is 0"),
        ({"spreadMax": None}, "spreadMax", "is required when bboCount is above 0"),
        ({"spreadMean": "0.51"}, "spreadMean", "mean spread 0.51 is above max spread 0.50"),
        ({"spreadMax": "-0.01"}, "spreadMax", "must not be negative"),
        ({"tradeCount": -1}, "tradeCount", "greater than or equal to 0"),
        ({"revision": -1}, "revision", "greater than or equal to 0"),
        ({"high": 94120.0}, "high", "got a float"),
        ({"computedTime": DROP}, "computedTime", "Field required"),
        ({"windowStart": "2026-01-02T13:30:00"}, "windowStart", "no time zone"),
    ],
)
def test_inconsistent_bar_names_the_field(changes: dict[str, Any], field: str, says: str) -> None:
    error = rejection(changed(BAR_CLOSED, **changes))
    assert error.fields == [field]
    assert says in error.problems[field]
