"""Binance frames to normalized records: real-shaped payloads, hand-written expectations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.connectors import (
    ControlEvent,
    DeadLetterReason,
    ParseResult,
    parse_binance_frame,
    parse_frame,
)
from brokerflow.errors import ConfigError
from brokerflow.metrics import metric_value
from brokerflow.schemas import BestBidAsk, Trade
from brokerflow.schemas.orders import Side

RECEIVED = datetime(2026, 4, 23, 13, 30, 0, 180000, tzinfo=UTC)

BINANCE_COM_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1767360600123,"s":"BTCUSDT",'
    '"t":5120334417,"p":"94112.01000000","q":"0.00106000","T":1767360600122,"m":true,"M":true}}'
)
BINANCE_US_TRADE = (
    '{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,'
    '"p":"0.001","q":"100","b":88,"a":50,"T":1672515782136,"m":false,"M":true}}'
)
BOOK_TICKER = (
    '{"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35190000",'
    '"B":"31.21000000","a":"25.36520000","A":"40.66000000"}}'
)


def only_letter(result: ParseResult) -> tuple[str, str, tuple[str, ...], str]:
    assert result.records == ()
    assert result.control is None
    (letter,) = result.dead_letters
    return letter.reason, letter.source, letter.fields, letter.detail


def test_binance_com_trade_where_the_buyer_made_the_market_is_a_sell() -> None:
    result = parse_binance_frame(BINANCE_COM_TRADE, RECEIVED)

    assert result == ParseResult(
        records=(
            Trade(
                venue="BINANCE",
                symbol="BTCUSDT",
                trade_id="5120334417",
                price=Decimal("94112.01000000"),
                quantity=Decimal("0.00106000"),
                aggressor_side=Side.SELL,
                event_time=datetime(2026, 1, 2, 13, 30, 0, 122000, tzinfo=UTC),
                receive_time=RECEIVED,
            ),
        )
    )
    assert result.ok


def test_binance_us_trade_with_order_ids_is_accepted_and_a_taker_buy() -> None:
    (trade,) = parse_binance_frame(BINANCE_US_TRADE, RECEIVED).records

    assert trade == Trade(
        venue="BINANCE",
        symbol="BNBBTC",
        trade_id="12345",
        price=Decimal("0.001"),
        quantity=Decimal("100"),
        aggressor_side=Side.BUY,
        event_time=datetime(2022, 12, 31, 19, 43, 2, 136000, tzinfo=UTC),
        receive_time=RECEIVED,
    )


def test_a_bare_trade_payload_from_a_single_stream_connection_is_accepted() -> None:
    bare = BINANCE_US_TRADE.removeprefix('{"stream":"bnbbtc@trade","data":').removesuffix("}")

    (trade,) = parse_binance_frame(bare, RECEIVED).records

    assert (trade.symbol, trade.trade_id, trade.aggressor_side) == ("BNBBTC", "12345", Side.BUY)


def test_book_ticker_is_stamped_with_the_receive_time() -> None:
    (quote,) = parse_binance_frame(BOOK_TICKER, RECEIVED).records

    assert quote == BestBidAsk(
        venue="BINANCE",
        symbol="BNBUSDT",
        bid_price=Decimal("25.35190000"),
        bid_quantity=Decimal("31.21000000"),
        ask_price=Decimal("25.36520000"),
        ask_quantity=Decimal("40.66000000"),
        update_id=400900217,
        event_time=RECEIVED,
        receive_time=RECEIVED,
    )
    assert quote.spread == Decimal("0.01330000")


def test_book_ticker_zero_side_means_an_empty_side() -> None:
    frame = '{"u":7,"s":"BNBUSDT","b":"0.00000000","B":"0.00000000","a":"25.3652","A":"40.66"}'

    (quote,) = parse_binance_frame(frame, RECEIVED).records

    assert (quote.bid_price, quote.bid_quantity) == (None, None)
    assert (quote.ask_price, quote.ask_quantity) == (Decimal("25.3652"), Decimal("40.66"))


def test_futures_style_book_ticker_uses_its_event_time() -> None:
    frame = (
        '{"e":"bookTicker","u":7,"E":1767360600123,"T":1767360600120,"s":"BTCUSDT",'
        '"b":"94112.00","B":"1.2","a":"94112.01","A":"0.3"}'
    )

    (quote,) = parse_binance_frame(frame, RECEIVED).records

    assert quote.event_time == datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "frame",
    [
        '{"e":"serverShutdown","E":1776951000000}',
        '{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1776951000000}}',
    ],
)
def test_server_shutdown_is_a_control_event_not_a_dead_letter(frame: str) -> None:
    assert parse_binance_frame(frame, RECEIVED) == ParseResult(control=ControlEvent.SERVER_SHUTDOWN)


def test_a_subscription_reply_is_a_control_event() -> None:
    result = parse_binance_frame('{"result":["btcusdt@trade"],"id":3}', RECEIVED)

    assert result == ParseResult(control=ControlEvent.SUBSCRIPTION_REPLY)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(
            BINANCE_COM_TRADE[:60],
            ("NOT_JSON", "binance_ws", ()),
            id="truncated",
        ),
        pytest.param("<html>502 Bad Gateway</html>", ("NOT_JSON", "binance_ws", ()), id="garbage"),
        pytest.param(
            BINANCE_COM_TRADE.replace('"q":"0.00106000"', '"q":"-0.00106000"'),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.q",)),
            id="negative-quantity",
        ),
        pytest.param(
            BINANCE_COM_TRADE.replace('"p":"94112.01000000"', '"p":94112.01'),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.p",)),
            id="float-price",
        ),
        pytest.param(
            BINANCE_COM_TRADE.replace('"p":"94112.01000000"', '"p":"NaN"'),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.p",)),
            id="nan-price",
        ),
        pytest.param(
            BINANCE_COM_TRADE.replace('"t":5120334417,', ""),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.t",)),
            id="missing-trade-id",
        ),
        pytest.param(
            BINANCE_COM_TRADE.replace('"s":"BTCUSDT"', '"s":"ETHUSDT"'),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.s",)),
            id="symbol-not-the-streams",
        ),
        pytest.param(
            BOOK_TICKER.replace('"b":"25.35190000"', '"b":"25.40000000"'),
            ("CROSSED_QUOTE", "binance_ws/bnbusdt@bookTicker", ("data.b", "data.a")),
            id="crossed-book-ticker",
        ),
        pytest.param(
            '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT"}}',
            ("UNKNOWN_EVENT", "binance_ws/btcusdt@aggTrade", ("stream",)),
            id="unsubscribed-stream",
        ),
        pytest.param(
            '{"e":"24hrTicker","E":1,"s":"BTCUSDT"}',
            ("UNKNOWN_EVENT", "binance_ws", ("e",)),
            id="unknown-bare-event",
        ),
        pytest.param(
            BINANCE_COM_TRADE.replace('"T":1767360600122', '"T":253402300800000'),
            ("INVALID_FIELD", "binance_ws/btcusdt@trade", ("data.T",)),
            id="trade-time-past-year-9999",  # raised OverflowError out of the parser once
        ),
        pytest.param(
            BOOK_TICKER.replace('"u":', '"E":99999999999999999999,"u":'),
            ("INVALID_FIELD", "binance_ws/bnbusdt@bookTicker", ("data.E",)),
            id="ticker-time-past-year-9999",
        ),
        pytest.param("[1,2,3]", ("UNKNOWN_EVENT", "binance_ws", ("<payload>",)), id="array"),
        pytest.param(
            '{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":4}',
            ("VENDOR_ERROR", "binance_ws", ("error",)),
            id="request-refused",
        ),
    ],
)
def test_every_malformed_kind_is_dead_lettered_with_its_reason_and_field(
    frame: str, expected: tuple[str, str, tuple[str, ...]]
) -> None:
    reason, source, fields, detail = only_letter(parse_binance_frame(frame, RECEIVED))

    assert (reason, source, fields) == expected
    assert detail  # a human-readable why


def test_dead_letter_keeps_the_frame_and_says_why() -> None:
    frame = BINANCE_COM_TRADE.replace('"q":"0.00106000"', '"q":"-0.00106000"')

    (letter,) = parse_binance_frame(frame, RECEIVED).dead_letters

    assert letter.raw_payload() == frame.encode()
    assert letter.detail == (
        "invalid Binance trade: data.q: must be greater than zero, got -0.00106000"
    )
    assert letter.event_time == RECEIVED


def test_crossed_quote_detail_names_both_prices() -> None:
    frame = BOOK_TICKER.replace('"b":"25.35190000"', '"b":"25.40000000"')

    (letter,) = parse_binance_frame(frame, RECEIVED).dead_letters

    assert letter.reason == DeadLetterReason.CROSSED_QUOTE
    assert letter.detail == "crossed quote for BNBUSDT: bid 25.40000000 is above ask 25.36520000"


def test_parse_frame_counts_dead_letters_by_reason() -> None:
    before = metric_value("dead_letters_total", source="binance_ws", reason="NOT_JSON")

    parse_frame("binance", "not json", RECEIVED)
    parse_frame("binance", BINANCE_COM_TRADE, RECEIVED)

    after = metric_value("dead_letters_total", source="binance_ws", reason="NOT_JSON")
    assert after - before == 1


def test_parse_frame_refuses_an_unknown_vendor_and_a_naive_receive_time() -> None:
    with pytest.raises(ConfigError, match="no parser for vendor 'kraken'"):
        parse_frame("kraken", BINANCE_COM_TRADE, RECEIVED)
    with pytest.raises(ValueError, match="tz-aware"):
        parse_frame("binance", BINANCE_COM_TRADE, datetime(2026, 4, 23, 13, 30))  # noqa: DTZ001
