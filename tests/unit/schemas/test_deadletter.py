"""The dead-letter envelope: refused input kept byte for byte, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.schemas import DeadLetter, PayloadEncoding, decode
from brokerflow.schemas.examples import DEAD_LETTER

from .support import DROP, changed, rejection, wire

WHEN = datetime(2026, 1, 2, 13, 30, 0, 200000, tzinfo=UTC)


def test_dead_letter_wire_form() -> None:
    assert wire(DEAD_LETTER) == {
        "schemaVersion": 1,
        "type": "DeadLetter",
        "source": "binance_ws",
        "reason": "SCHEMA_INVALID",
        "detail": "invalid Trade: price: must be greater than zero, got 0",
        "fields": ["price"],
        "payload": '{"e":"trade","s":"BTCUSDT","t":5120334418,"p":"0.00000000","q":"1.0"}',
        "payloadEncoding": "utf-8",
        "key": "BTCUSDT",
        "keyEncoding": "utf-8",
        "partition": 3,
        "offset": 1042,
        "eventTime": "2026-01-02T13:30:00.200000Z",
    }


def test_utf8_payload_is_kept_as_text_whitespace_and_all() -> None:
    raw = b'  {"symbol": "PETR4", "price": 38.12}\n'
    letter = DeadLetter.from_payload(
        source="order-events-v1", reason="NOT_JSON", detail="trailing", payload=raw, event_time=WHEN
    )
    assert letter.payload == '  {"symbol": "PETR4", "price": 38.12}\n'
    assert letter.payload_encoding is PayloadEncoding.UTF8
    decoded = decode(wire(letter))
    assert isinstance(decoded, DeadLetter)
    assert decoded.raw_payload() == raw


def test_binary_payload_and_key_are_kept_as_base64() -> None:
    letter = DeadLetter.from_payload(
        source="market.trades.raw",
        reason="NOT_JSON",
        detail="payload is not UTF-8",
        payload=b"\xff\x00 a ",
        key=b"\x80\x81",
        partition=0,
        offset=7,
        event_time=WHEN,
    )
    assert (letter.payload, letter.payload_encoding) == ("/wAgYSA=", PayloadEncoding.BASE64)
    assert (letter.key, letter.key_encoding) == ("gIE=", PayloadEncoding.BASE64)
    decoded = decode(wire(letter))
    assert isinstance(decoded, DeadLetter)
    assert decoded.raw_payload() == b"\xff\x00 a "
    assert decoded.raw_key() == b"\x80\x81"


def test_text_payload_with_a_lone_surrogate_falls_back_to_base64() -> None:
    letter = DeadLetter.from_payload(
        source="brapi", reason="NOT_JSON", detail="bad text", payload="a\ud800b", event_time=WHEN
    )
    assert letter.payload_encoding is PayloadEncoding.BASE64
    assert letter.raw_payload() == b"a\xed\xa0\x80b"


def test_from_error_for_an_invalid_payload() -> None:
    raw = b'{"type": "Trade", "schemaVersion": 1, "price": 1.5}'
    with pytest.raises(SchemaError) as info:
        decode(raw)
    letter = DeadLetter.from_error(
        info.value, source="market.trades", payload=raw, key="BTCUSDT", event_time=WHEN
    )
    assert letter.reason == "SCHEMA_INVALID"
    assert "price" in letter.fields
    assert letter.detail.startswith("invalid Trade: ")
    assert "expected a decimal string such as '1.5', got a float" in letter.detail
    assert letter.raw_payload() == raw
    assert letter.raw_key() == b"BTCUSDT"


def test_from_error_for_an_unknown_message() -> None:
    raw = b'{"type": "OrderTeleported", "schemaVersion": 1}'
    with pytest.raises(UnknownMessageError) as info:
        decode(raw)
    letter = DeadLetter.from_error(
        info.value, source="order-events-v1", payload=raw, event_time=WHEN
    )
    assert letter.reason == "UNKNOWN_MESSAGE"
    assert letter.fields == ("type",)
    assert letter.detail == "invalid message: type: unknown message type 'OrderTeleported'"


def test_source_and_reason_are_trimmed_but_detail_is_not() -> None:
    decoded = decode(changed(DEAD_LETTER, source=" binance_ws ", reason=" NOT_JSON ", detail=" x "))
    assert isinstance(decoded, DeadLetter)
    assert (decoded.source, decoded.reason, decoded.detail) == ("binance_ws", "NOT_JSON", " x ")


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"payloadEncoding": "base64", "payload": "not base64!"}, "payload", "not valid base64"),
        ({"keyEncoding": "base64", "key": "BTC*USDT"}, "key", "not valid base64"),
        ({"payload": "\ud800"}, "payload", "not valid utf-8"),
        ({"payloadEncoding": "latin-1"}, "payloadEncoding", "utf-8"),
        ({"reason": "schema invalid"}, "reason", "pattern"),
        ({"reason": ""}, "reason", "pattern"),
        ({"source": ""}, "source", "at least 1 character"),
        ({"detail": ""}, "detail", "at least 1 character"),
        ({"partition": -1}, "partition", "greater than or equal to 0"),
        ({"offset": -5}, "offset", "greater than or equal to 0"),
        ({"payload": DROP}, "payload", "Field required"),
        ({"fields": "price"}, "fields", "tuple"),
    ],
)
def test_invalid_dead_letter_names_the_field(
    changes: dict[str, Any], field: str, says: str
) -> None:
    error = rejection(changed(DEAD_LETTER, **changes))
    assert error.fields == [field]
    assert says in error.problems[field]
