"""Fees, the order checks and the session, with hand-computed numbers."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from brokerflow.broker import BrokerRules, FeeRates, check_order, fee, session_open
from brokerflow.settings import Settings

from .support import CATALOG, RULES, D, order

PETR4 = CATALOG["PETR4"]
BTC = CATALOG["BTCUSDT"]


@pytest.mark.parametrize(
    ("notional", "expected"),
    [
        # BUY 100 PETR4 @ 38.52: 3852.00 x 0.03 % = 1.1556 -> 1.16
        ("3852.00", "1.16"),
        # 7700.00 x 0.03 % = 2.31 exactly
        ("7700.00", "2.31"),
        # ties go to the even cent: 50.00 -> 0.015 -> 0.02; 150.00 -> 0.045 -> 0.04
        ("50.00", "0.02"),
        ("150.00", "0.04"),
        # 10.00 -> 0.003 -> 0.00: a fee can round to nothing
        ("10.00", "0.00"),
    ],
)
def test_b3_fee_is_trading_plus_settlement_rounded_half_even_to_centavos(
    notional: str, expected: str
) -> None:
    result = fee(RULES, PETR4, D(notional))
    assert result == D(expected)
    assert str(result) == expected  # always exactly two places


@pytest.mark.parametrize(
    ("notional", "expected"),
    [
        # 0.001 BTC @ 65000.01 = 65.00001 -> 0.1 % = 0.06500001
        ("65.00001", "0.06500001"),
        # 0.00001 BTC @ 65000.01 = 0.6500001 -> 0.0006500001 -> 0.00065000
        ("0.6500001", "0.00065000"),
        # ties to even at the 8th place: 0.000015 -> 0.000000015 -> 0.00000002;
        # 0.000025 -> 0.000000025 -> 0.00000002
        ("0.000015", "0.00000002"),
        ("0.000025", "0.00000002"),
    ],
)
def test_crypto_fee_rounds_half_even_to_eight_places(notional: str, expected: str) -> None:
    assert format(fee(RULES, BTC, D(notional)), "f") == expected


def test_fee_rates_come_from_the_settings() -> None:
    settings = Settings(
        broker_b3_trading_fee_pct=Decimal("0.01"),
        broker_b3_settlement_fee_pct=Decimal("0.04"),
        broker_crypto_fee_pct=Decimal("0.075"),
        broker_market_buy_collar_pct=Decimal("2"),
        exchange_session_open=time(9, 30),
    )
    rules = BrokerRules.from_settings(settings)
    assert rules.fees == FeeRates(D("0.01"), D("0.04"), D("0.075"))
    assert rules.market_buy_collar_pct == D("2")
    assert rules.session_open == time(9, 30)
    assert rules.session_tz == "America/Sao_Paulo"
    # 3852.00 x 0.05 % = 1.926 -> 1.93; 65.00001 x 0.075 % = 0.0487500075 -> 0.04875001
    assert fee(rules, rules.instruments["PETR4"], D("3852.00")) == D("1.93")
    assert fee(rules, rules.instruments["BTCUSDT"], D("65.00001")) == D("0.04875001")
    # the bundled catalog: 4 B3 stocks and 5 Binance pairs
    assert len(rules.instruments) == 9


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (datetime(2026, 6, 25, 12, 59, 59, tzinfo=UTC), False),  # 09:59:59 local
        (datetime(2026, 6, 25, 13, 0, tzinfo=UTC), True),  # 10:00 sharp
        (datetime(2026, 6, 25, 19, 59, 59, tzinfo=UTC), True),  # 16:59:59
        (datetime(2026, 6, 25, 20, 0, tzinfo=UTC), False),  # 17:00: closed
        (datetime(2026, 6, 27, 15, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2027, 2, 8, 15, 0, tzinfo=UTC), False),  # Carnival Monday 2027
    ],
)
def test_b3_session(moment: datetime, is_open: bool) -> None:
    assert session_open(RULES, PETR4, moment) is is_open
    assert session_open(RULES, BTC, moment) is True  # 24x7


def test_check_order_accepts_a_good_order() -> None:
    assert check_order(RULES, order("o1", "BUY", "100", "38.52")) is None
    assert check_order(RULES, order("o2", "BUY", "0.00001", "65000.01", "BTCUSDT")) is None


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (order("o1", "BUY", "100", "38.52", "PETR3"), "UNKNOWN_SYMBOL", "PETR3 is not traded"),
        (order("o1", "BUY", "100", "38.525"), "TICK_SIZE", "price 38.525 is not a multiple"),
        (order("o1", "BUY", "0.5", "38.52"), "LOT_SIZE", "quantity 0.5 is not a multiple"),
        (order("o1", "SELL", "0.000015", None, "BTCUSDT"), "LOT_SIZE", "lot size 0.00001"),
        (
            order(
                "o1",
                "BUY",
                "100",
                "38.52",
                time_in_force="DAY",
                when=datetime(2026, 6, 27, 15, 0, tzinfo=UTC),
            ),
            "MARKET_CLOSED",
            "10:00-17:00 America/Sao_Paulo",
        ),
    ],
)
def test_check_order_refusals(request_: object, code: str, words: str) -> None:
    refusal = check_order(RULES, request_)  # type: ignore[arg-type]
    assert refusal is not None
    assert refusal.code == code
    assert words in refusal.message


def test_only_day_orders_on_b3_need_the_session() -> None:
    saturday = datetime(2026, 6, 27, 15, 0, tzinfo=UTC)
    for tif in ("GTC", "IOC", "FOK"):
        assert (
            check_order(RULES, order("o1", "BUY", "1", "38.52", time_in_force=tif, when=saturday))
            is None
        )
    day_btc = order("o2", "BUY", "0.001", "65000.00", "BTCUSDT", time_in_force="DAY", when=saturday)
    assert check_order(RULES, day_btc) is None
