"""Brapi response bodies to normalized quotes: numbers stay exact, errors become dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.connectors import ParseResult, parse_brapi_body, parse_frame
from brokerflow.metrics import metric_value
from brokerflow.schemas import Quote

RECEIVED = datetime(2026, 4, 23, 17, 7, 42, 318000, tzinfo=UTC)

PETR4 = (
    '{"currency":"BRL","shortName":"PETROBRAS   PN      N2",'
    '"longName":"Petróleo Brasileiro S.A. - Petrobras","regularMarketChange":0.45,'
    '"regularMarketChangePercent":1.2032,"regularMarketTime":"2026-04-23T17:07:00.000Z",'
    '"regularMarketPrice":37.85,"regularMarketDayHigh":38,"regularMarketDayRange":"37.2 - 38",'
    '"regularMarketDayLow":37.2,"regularMarketVolume":45678900,'
    '"regularMarketPreviousClose":37.4,"regularMarketOpen":37.52,"symbol":"PETR4",'
    '"logourl":"https://icons.brapi.dev/icons/PETR4.svg"}'
)
VALE3_SPARSE = (
    '{"symbol":"VALE3","currency":null,"regularMarketPrice":61.48,'
    '"regularMarketTime":1776963600,"regularMarketDayHigh":0,"regularMarketDayLow":0,'
    '"regularMarketOpen":null,"regularMarketVolume":null}'
)


def body(*entries: str) -> str:
    return (
        '{"results":['
        + ",".join(entries)
        + '],"requestedAt":"2026-04-23T17:07:42.073Z","took":245}'
    )


def test_a_full_quote_keeps_every_number_exact() -> None:
    result = parse_brapi_body(body(PETR4), RECEIVED)

    assert result == ParseResult(
        records=(
            Quote(
                venue="BRAPI",
                symbol="PETR4",
                currency="BRL",
                last_price=Decimal("37.85"),
                day_high=Decimal("38"),
                day_low=Decimal("37.2"),
                day_open=Decimal("37.52"),
                previous_close=Decimal("37.4"),
                volume=Decimal("45678900"),
                change=Decimal("0.45"),
                change_percent=Decimal("1.2032"),
                event_time=datetime(2026, 4, 23, 17, 7, tzinfo=UTC),
                receive_time=RECEIVED,
            ),
        )
    )
    # Through parse_float=Decimal, not float: 37.85 is not 37.850000000000001.
    assert str(result.records[0].last_price) == "37.85"


def test_nulls_zeros_and_a_unix_market_time_are_understood() -> None:
    (quote,) = parse_brapi_body(body(VALE3_SPARSE), RECEIVED).records

    assert quote == Quote(
        venue="BRAPI",
        symbol="VALE3",
        currency="BRL",
        last_price=Decimal("61.48"),
        event_time=datetime(2026, 4, 23, 17, 0, tzinfo=UTC),
        receive_time=RECEIVED,
    )


def test_good_and_bad_entries_of_one_body_are_split() -> None:
    no_price = (
        '{"symbol":"BBDC4","regularMarketPrice":null,"regularMarketTime":"2026-04-23T17:07:00Z"}'
    )

    result = parse_brapi_body(body(PETR4, no_price, VALE3_SPARSE), RECEIVED)

    assert [quote.symbol for quote in result.records] == ["PETR4", "VALE3"]
    (letter,) = result.dead_letters
    assert (letter.reason, letter.source, letter.fields) == (
        "INVALID_FIELD",
        "brapi/quote",
        ("results.1.regularMarketPrice",),
    )
    assert letter.detail == "regularMarketPrice is null: Brapi has no price for BBDC4"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            '{"error":true,"message":"Erro ao buscar a cotação de ITUB4"}',
            ("VENDOR_ERROR", ("message",), "Brapi error: Erro ao buscar a cotação de ITUB4"),
            id="error-true-message",
        ),
        pytest.param(
            '{"error":"Não encontramos a ação XPTO4"}',
            ("VENDOR_ERROR", ("error",), "Brapi error: Não encontramos a ação XPTO4"),
            id="error-string",
        ),
        pytest.param(
            "<html><h1>502 Bad Gateway</h1></html>",
            ("NOT_JSON", (), "not JSON: Expecting value: line 1 column 1 (char 0)"),
            id="html",
        ),
        pytest.param(
            '["PETR4"]',
            ("UNKNOWN_EVENT", ("<payload>",), "expected a JSON object, got list"),
            id="array",
        ),
        pytest.param(
            '{"results":null}',
            (
                "INVALID_FIELD",
                ("results",),
                "results: expected a list of quotes, got NoneType",
            ),
            id="no-results",
        ),
        pytest.param(
            body(PETR4.replace('"regularMarketPrice":37.85', '"regularMarketPrice":-1')),
            (
                "INVALID_FIELD",
                ("results.0.regularMarketPrice",),
                "invalid Brapi quote for PETR4: results.0.regularMarketPrice: must be greater "
                "than zero, got -1",
            ),
            id="negative-price",
        ),
        pytest.param(
            body(PETR4.replace('"regularMarketPrice":37.85', '"regularMarketPrice":"37.85"')),
            (
                "INVALID_FIELD",
                ("results.0.regularMarketPrice",),
                "invalid Brapi quote: results.0.regularMarketPrice: expected a JSON number, got "
                "str '37.85'",
            ),
            id="price-as-text",
        ),
        pytest.param(
            body(PETR4.replace('"2026-04-23T17:07:00.000Z"', '"yesterday"')),
            (
                "INVALID_FIELD",
                ("results.0.regularMarketTime",),
                "invalid Brapi quote for PETR4: results.0.regularMarketTime: 'yesterday' is not "
                "an ISO 8601 timestamp",
            ),
            id="bad-time",
        ),
        pytest.param(
            body('{"symbol":"ITUB4","regularMarketPrice":34.5}'),
            (
                "INVALID_FIELD",
                ("results.0.regularMarketTime",),
                "regularMarketTime is null: no market time for ITUB4's quote",
            ),
            id="no-time",
        ),
    ],
)
def test_every_malformed_body_is_dead_lettered(
    raw: str, expected: tuple[str, tuple[str, ...], str]
) -> None:
    result = parse_brapi_body(raw, RECEIVED)

    assert result.records == ()
    (letter,) = result.dead_letters
    reason, fields, detail = expected
    assert (letter.reason, letter.source, letter.fields) == (reason, "brapi/quote", fields)
    assert letter.detail == detail
    assert letter.raw_payload() == raw.encode()


def test_an_empty_result_list_is_neither_record_nor_error() -> None:
    assert parse_brapi_body(body(), RECEIVED) == ParseResult()


def test_parse_frame_counts_brapi_dead_letters() -> None:
    before = metric_value("dead_letters_total", source="brapi", reason="VENDOR_ERROR")

    parse_frame("brapi", '{"error":"limit"}', RECEIVED)

    assert metric_value("dead_letters_total", source="brapi", reason="VENDOR_ERROR") == before + 1
