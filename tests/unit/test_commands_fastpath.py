"""The exchange's fast command decoder against full validation: the same values, or ``None``.

Differential: for generated commands (valid ones, and mutations pydantic may refuse), the raw
text of the bench tape and every example, :func:`fast_command_fields` returns either ``None`` or
exactly the field values ``decode`` builds (same keys in the same order, equal values of the same
types), and never anything for a payload ``decode`` refuses. The model rebuilt from the fast
values encodes to the same bytes, and gives the same engine command.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerflow.errors import SchemaError
from brokerflow.exchange.io import commands_from_tape
from brokerflow.exchange.state import engine_command
from brokerflow.matching.rules import SymbolRules
from brokerflow.schemas import Message, decode
from brokerflow.schemas.commands_fastpath import FAST_COMMAND_TYPES, fast_command_fields
from brokerflow.schemas.examples import EXAMPLES

RULES = SymbolRules(tick_size=Decimal("0.01"), lot_size=Decimal("1"))


def full_decode(raw: bytes) -> Message | None:
    try:
        return decode(raw)
    except SchemaError:
        return None


def check(raw: bytes) -> dict[str, Any] | None:
    """Run the fast path against full validation; return the fast result."""
    fast = fast_command_fields(raw)
    slow = full_decode(raw)
    if fast is None:
        return None
    assert slow is not None, f"fast path accepted what full validation refuses: {raw!r}"
    assert type(slow).__name__ in FAST_COMMAND_TYPES
    expected = slow.__dict__
    assert list(fast) == list(expected)
    assert fast == expected
    for name, value in expected.items():
        assert type(fast[name]) is type(value), name
        if isinstance(value, Decimal):
            assert fast[name].as_tuple() == value.as_tuple(), name  # same exponent too
    rebuilt = type(slow).model_construct(**fast)
    assert rebuilt.to_json_bytes() == slow.to_json_bytes()
    assert engine_command(fast, RULES) == engine_command(slow, RULES)
    return fast


# --- generators ---------------------------------------------------------------------------------
ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=70
) | st.sampled_from(["o-1", "acc-42", "x" * 64, "x" * 65, "", " o1", "o1 ", "o\t1"])
symbols = st.sampled_from(
    ["PETR4", "petr4", "BTCUSDT", "BRK.B", " PETR4", "PETR\uff14", "", "A" * 33]
)
decimals = st.one_of(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4).map(
        lambda d: format(d, "f")
    ),
    st.sampled_from(["0", "0.0", "-1", "1e3", "1E-2", " 1", "1 ", "1_000", "NaN", "Infinity"]),
    st.sampled_from(["1.", ".5", "00.10", "1" * 40, "1" * 41, "0." + "0" * 38 + "1"]),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(
        [
            "2026-01-02T13:30:00Z",
            "2026-01-02T13:30:00.123456Z",
            "2026-01-02T13:30:00+03:00",
            "2026-01-02T13:30:00",
            "2026-01-02",
            "2026-13-02T13:30:00Z",
            " 2026-01-02T13:30:00Z",
            "0001-01-01T00:00:00+01:00",
            "not a time",
        ]
    ),
    st.integers(),
)
optional_ids = st.none() | ids


@st.composite
def place_order(draw: st.DrawFn) -> dict[str, Any]:
    order_type = draw(st.sampled_from(["LIMIT", "MARKET", "limit", "STOP"]))
    payload: dict[str, Any] = {
        "type": "PlaceOrder",
        "schemaVersion": draw(st.sampled_from([1, 1, 2, "1", True, 1.0])),
        "orderId": draw(ids),
        "accountId": draw(ids),
        "symbol": draw(symbols),
        "side": draw(st.sampled_from(["BUY", "SELL", "buy", " BUY", "HOLD"])),
        "orderType": order_type,
        "timeInForce": draw(st.sampled_from(["GTC", "DAY", "IOC", "FOK", "gtc", None])),
        "quantity": draw(decimals),
        "price": draw(st.none() | decimals) if order_type != "LIMIT" else draw(decimals),
        "idempotencyKey": draw(optional_ids),
        "eventTime": draw(times),
    }
    return payload


@st.composite
def cancel_order(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "CancelOrder",
        "schemaVersion": 1,
        "orderId": draw(ids),
        "accountId": draw(optional_ids),
        "symbol": draw(symbols),
        "eventTime": draw(times),
    }


@st.composite
def amend_order(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "AmendOrder",
        "schemaVersion": 1,
        "orderId": draw(ids),
        "accountId": draw(optional_ids),
        "symbol": draw(symbols),
        "quantity": draw(st.none() | decimals),
        "price": draw(st.none() | decimals),
        "eventTime": draw(times),
    }


commands = st.one_of(place_order(), cancel_order(), amend_order())


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A command with keys dropped, renamed to snake_case, added, or set to odd values."""
    payload = dict(draw(commands))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(payload)))
        action = draw(st.sampled_from(["drop", "snake", "extra", "null", "list"]))
        if action == "drop":
            payload.pop(key)
        elif action == "snake":
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
            payload[snake] = payload.pop(key)
        elif action == "extra":
            payload["note"] = "x"
        elif action == "null":
            payload[key] = None
        else:
            payload[key] = [payload[key]]
    return payload


def dumps(payload: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(payload, indent=indent, ensure_ascii=False).encode()


PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(commands, st.sampled_from([None, 1]))
def test_generated_commands_decode_identically_or_fall_back(
    payload: dict[str, Any], indent: int | None
) -> None:
    check(dumps(payload, indent))


@PROPERTY
@given(mutated())
def test_mutated_commands_never_pass_where_full_validation_refuses(payload: dict[str, Any]) -> None:
    check(dumps(payload))


@PROPERTY
@given(commands, st.binary(max_size=4), st.integers(0, 400))
def test_mangled_bytes_never_pass_where_full_validation_refuses(
    payload: dict[str, Any], junk: bytes, at: int
) -> None:
    raw = dumps(payload)
    check(raw[:at] + junk + raw[at:])


def test_plain_commands_take_the_fast_path() -> None:
    place = {
        "type": "PlaceOrder",
        "schemaVersion": 1,
        "orderId": "o-1",
        "accountId": "acc-1",
        "symbol": "PETR4",
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "quantity": "100",
        "price": "38.52",
        "eventTime": "2026-01-02T13:30:00.000000Z",
    }
    market = {**place, "orderType": "MARKET", "price": None, "timeInForce": "IOC"}
    cancel = {
        "type": "CancelOrder",
        "schemaVersion": 1,
        "orderId": "o-1",
        "symbol": "PETR4",
        "eventTime": "2026-01-02T13:30:00+01:00",
    }
    amend = {
        "type": "AmendOrder",
        "schemaVersion": 1,
        "orderId": "o-1",
        "symbol": "petr4",
        "price": "38.5",
        "eventTime": "2026-01-02T13:30:00Z",
    }
    for payload in (place, market, cancel, amend):
        assert check(dumps(payload)) is not None, payload


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"quantity": 100}, "a JSON number: pydantic reads it, the fast path leaves it"),
        ({"orderId": " o-1"}, "surrounding whitespace is pydantic's to strip"),
        ({"order_id": "o-1"}, "snake_case names are accepted by pydantic only"),
        ({"price": None}, "a LIMIT order without a price: refused"),
        ({"orderType": "MARKET"}, "a MARKET order with a price: refused"),
        ({"quantity": "0"}, "zero: refused"),
        ({"quantity": "1e2"}, "an exponent: pydantic's to read"),
        ({"eventTime": "2026-01-02T13:30:00"}, "no zone: refused"),
        ({"symbol": "PETR\uff14"}, "a full-width digit: refused"),
    ],
)
def test_doubtful_commands_fall_back(change: dict[str, Any], why: str) -> None:
    place = {
        "type": "PlaceOrder",
        "schemaVersion": 1,
        "orderId": "o-1",
        "accountId": "acc-1",
        "symbol": "PETR4",
        "side": "SELL",
        "orderType": "LIMIT",
        "quantity": "100",
        "price": "38.52",
        "eventTime": "2026-01-02T13:30:00Z",
    }
    payload = {**place, **change}
    if "order_id" in change:
        del payload["orderId"]
    assert fast_command_fields(dumps(payload)) is None, why
    check(dumps(payload))


def test_a_repeated_type_key_falls_back_and_the_last_one_wins_in_full_validation() -> None:
    """msgspec picks the struct by the first ``type``, json.loads keeps the last one."""
    raw = (
        b'{"type":"CancelOrder","schemaVersion":1,"orderId":"o-1","symbol":"PETR4",'
        b'"eventTime":"2026-01-02T13:30:00Z","type":"AmendOrder","quantity":"5"}'
    )
    assert fast_command_fields(raw) is None
    message = decode(raw)
    assert message.type == "AmendOrder"


def test_every_example_decodes_identically() -> None:
    fast_types = set()
    for message in EXAMPLES:
        raw = message.to_json_bytes()
        if message.type in FAST_COMMAND_TYPES:
            assert check(raw) is not None, message
            fast_types.add(message.type)
        else:
            assert fast_command_fields(raw) is None, message
    assert fast_types == FAST_COMMAND_TYPES


def test_the_bench_tape_decodes_identically_on_the_fast_path() -> None:
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    import bench_matching

    for command in commands_from_tape(bench_matching.generate_tape(3000)):
        raw = command.to_json_bytes()
        if command.type in FAST_COMMAND_TYPES:
            assert check(raw) is not None, raw
