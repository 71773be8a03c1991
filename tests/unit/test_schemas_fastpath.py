"""The fast Trade/BestBidAsk decoder against pydantic: same model, or ``None``, never more.

Differential: for generated payloads (valid ones, and mutations pydantic may refuse) the fast
path returns either ``None`` or exactly the model ``model_validate_json`` builds (equal fields,
equal decimal exponents, equal ``model_fields_set``, equal ``repr`` and wire bytes), and never a
model for a payload pydantic refuses.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from brokerflow.connectors import parse_frame, read_tape, sample_tape_path
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.schemas.fastpath import fast_decode, fast_decode_best_bid_ask, fast_decode_trade
from brokerflow.schemas.market import BestBidAsk, Trade

Model = type[Trade] | type[BestBidAsk]


def pydantic_decode(cls: Model, raw: bytes) -> Trade | BestBidAsk | None:
    try:
        return cls.model_validate_json(raw)
    except ValidationError:
        return None


def assert_identical(fast: BaseModel, slow: BaseModel) -> None:
    assert type(fast) is type(slow)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert repr(fast) == repr(slow)  # Decimal exponents, enum members, tz objects, field order
    assert fast.model_dump_json(by_alias=True) == slow.model_dump_json(by_alias=True)
    assert fast.model_dump(exclude_unset=True) == slow.model_dump(exclude_unset=True)
    for name, value in slow.__dict__.items():
        assert type(fast.__dict__[name]) is type(value), name
        if isinstance(value, datetime):
            assert fast.__dict__[name].tzinfo is value.tzinfo, name
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    # and model_construct (what the fast path stands for) builds the same
    built = type(slow).model_construct(slow.model_fields_set, **slow.__dict__)
    assert built == fast
    assert repr(built) == repr(fast)


def check(raw: bytes) -> Trade | BestBidAsk | None:
    """Run every fast entry point against pydantic; return the fast result."""
    fast = fast_decode(raw)
    for cls, typed in ((Trade, fast_decode_trade), (BestBidAsk, fast_decode_best_bid_ask)):
        slow = pydantic_decode(cls, raw)
        one = typed(raw)
        if one is not None:
            assert slow is not None, f"fast path accepted what pydantic refuses: {raw!r}"
            assert_identical(one, slow)
        if isinstance(fast, cls):
            assert slow is not None, f"fast path accepted what pydantic refuses: {raw!r}"
            assert_identical(fast, slow)
            assert one is not None
    return fast


# --- generators ---------------------------------------------------------------------------------
good_decimal = st.one_of(
    st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal("999999999"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    ).map(lambda d: format(d, "f")),
    st.from_regex(r"\A[1-9][0-9]{0,19}(\.[0-9]{0,19})?\Z"),
)
decimal_text = st.one_of(
    good_decimal,
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{0,20})?\Z"),
    st.from_regex(r"\A\.[0-9]{1,10}\Z"),
    st.sampled_from(["1", "0", "0.0", "00001.50", "1.", "1e3", "1E-3", "-1", "+1", " 1", "1 "]),
    st.sampled_from(["1_000", "NaN", "Infinity", "-0", "1e999999999", "9" * 41, "0." + "1" * 40]),
    st.sampled_from(["\u0661\u0662", "\uff11", "\u00b2", "1\u00a0", "0x10", "", "."]),
)
json_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just([]),
    st.just({}),
    st.just(["1"]),
)
decimal_value = st.one_of(decimal_text, decimal_text, json_junk)

times = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def good_time(draw: st.DrawFn) -> str:
    when = draw(times)
    style = draw(st.integers(min_value=0, max_value=2))
    if style == 0:
        return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if style == 1:
        return when.isoformat()
    offset = timedelta(minutes=draw(st.integers(min_value=-23 * 60, max_value=23 * 60)))
    try:
        return when.astimezone(timezone(offset)).isoformat(timespec="milliseconds")
    except OverflowError:
        return when.isoformat()


@st.composite
def time_text(draw: st.DrawFn) -> Any:
    when = draw(times)
    style = draw(st.integers(min_value=0, max_value=9))
    if style == 0:
        return when.isoformat()
    if style == 1:
        offset = timedelta(minutes=draw(st.integers(min_value=-23 * 60, max_value=23 * 60)))
        try:
            return when.astimezone(timezone(offset)).isoformat()
        except OverflowError:
            return when.isoformat()
    if style == 2:  # naive
        return when.replace(tzinfo=None).isoformat()
    if style == 3:
        return when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    if style == 4:
        return when.strftime("%Y%m%dT%H%M%SZ") if when.year >= 1000 else "2026-13-01T00:00:00Z"
    if style == 5:
        return draw(st.sampled_from(["", "now", "2026-01-02", "2026-01-02T13:00:00+25:00"]))
    if style == 6:
        return draw(json_junk)
    if style == 7:
        return " " + when.isoformat()
    if style == 8:
        return draw(st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]))
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


text_value = st.one_of(
    st.sampled_from(["BINANCE", "binance", "BROKERFLOW", "BRAPI", "B3_X", "btcusdt", "PETR4"]),
    st.sampled_from(["BRK.B", "BTC-USD", "", " BTC", "BTC ", "PETR\uff14", "A" * 33, "a_b"]),
    st.text(alphabet="abcXYZ019._- \t\u00e9", min_size=0, max_size=8),
    json_junk,
)
trade_id = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.text(min_size=0, max_size=70),
    st.sampled_from([" 1", "1 ", "x" * 64, "x" * 65, "\u00e9"]),
    json_junk,
)
side = st.sampled_from(["BUY", "SELL", None, "buy", " BUY", "HOLD", 1, True])
update_id = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=2**64),
    st.sampled_from(["5", 5.0, True, -1]),
)


@st.composite
def valid_trade(draw: st.DrawFn) -> dict[str, Any]:
    when = draw(times)
    payload = {
        "type": "Trade",
        "schemaVersion": 1,
        "venue": draw(st.sampled_from(["BINANCE", "BROKERFLOW", "brapi"])),
        "symbol": draw(st.from_regex(r"\A[A-Za-z0-9]{1,10}([.-][A-Z0-9]{1,4})?\Z")),
        "tradeId": str(draw(st.integers(min_value=0, max_value=10**15))),
        "price": draw(good_decimal),
        "quantity": draw(good_decimal),
        "aggressorSide": draw(st.sampled_from(["BUY", "SELL", None])),
        "eventTime": when.isoformat(),
        "receiveTime": draw(st.one_of(good_time(), st.just(when.isoformat()))),
    }
    if draw(st.booleans()):
        del payload["aggressorSide"]
    return payload


@st.composite
def valid_quote(draw: st.DrawFn) -> dict[str, Any]:
    bid = draw(
        st.decimals(
            min_value=Decimal("0.01"), max_value=Decimal("100000"), places=draw(st.integers(0, 8))
        )
    )
    ask = bid + draw(
        st.decimals(min_value=Decimal(0), max_value=Decimal(10), places=draw(st.integers(0, 8)))
    )
    payload: dict[str, Any] = {
        "type": "BestBidAsk",
        "schemaVersion": 1,
        "venue": "BINANCE",
        "symbol": draw(st.sampled_from(["BTCUSDT", "ethusdt", "PETR4"])),
        "bidPrice": format(bid, "f"),
        "bidQuantity": draw(good_decimal),
        "askPrice": format(ask, "f"),
        "askQuantity": draw(good_decimal),
        "updateId": draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**62))),
        "eventTime": draw(good_time()),
        "receiveTime": draw(good_time()),
    }
    if draw(st.booleans()):  # an empty side
        side_name = draw(st.sampled_from(["bid", "ask"]))
        payload[f"{side_name}Price"] = None
        payload[f"{side_name}Quantity"] = None
    if draw(st.booleans()):
        del payload["updateId"]
    return payload


KEYS = [
    "type",
    "schemaVersion",
    "venue",
    "symbol",
    "tradeId",
    "price",
    "quantity",
    "aggressorSide",
    "bidPrice",
    "bidQuantity",
    "askPrice",
    "askQuantity",
    "updateId",
    "eventTime",
    "receiveTime",
    "trade_id",
    "bid_price",
    "event_time",
    "extra",
]
VALUE_FOR_KEY = {
    "type": st.sampled_from(["Trade", "BestBidAsk", "Quote", "trade", " Trade", None, 1]),
    "schemaVersion": st.sampled_from([1, 2, 0, "1", 1.0, True, None]),
    "venue": text_value,
    "symbol": text_value,
    "tradeId": trade_id,
    "trade_id": trade_id,
    "aggressorSide": side,
    "updateId": update_id,
    "eventTime": time_text(),
    "event_time": time_text(),
    "receiveTime": time_text(),
}


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    payload = dict(draw(st.one_of(valid_trade(), valid_quote())))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(KEYS))
        action = draw(st.sampled_from(["drop", "set", "set"]))
        if action == "drop":
            payload.pop(key, None)
        else:
            payload[key] = draw(VALUE_FOR_KEY.get(key, decimal_value))
    return payload


def crossed(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("bidPrice") is None or payload.get("askPrice") is None:
        return payload
    out = dict(payload)
    out["bidPrice"], out["askPrice"] = payload["askPrice"], payload["bidPrice"]
    return out


def dumps(payload: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(payload, indent=indent, ensure_ascii=False).encode()


# --- properties ---------------------------------------------------------------------------------
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.one_of(valid_trade(), valid_quote()), st.sampled_from([None, 1]))
def test_generated_payloads_decode_identically_or_fall_back(
    payload: dict[str, Any], indent: int | None
) -> None:
    check(dumps(payload, indent))
    check(dumps(crossed(payload)))


@PROPERTY
@given(mutated())
def test_mutated_payloads_never_pass_where_pydantic_refuses(payload: dict[str, Any]) -> None:
    check(dumps(payload))


@PROPERTY
@given(st.one_of(valid_trade(), valid_quote()), st.binary(max_size=4), st.integers(0, 300))
def test_mangled_bytes_never_pass_where_pydantic_refuses(
    payload: dict[str, Any], junk: bytes, at: int
) -> None:
    raw = dumps(payload)
    at = min(at, len(raw))
    check(raw[:at] + junk + raw[at:])


def test_plain_valid_payloads_take_the_fast_path() -> None:
    when = "2026-01-02T13:30:00.122000Z"
    trade = {
        "type": "Trade",
        "schemaVersion": 1,
        "venue": "binance",
        "symbol": "btcusdt",
        "tradeId": "1",
        "price": "94112.01000000",
        "quantity": "0.5",
        "aggressorSide": "BUY",
        "eventTime": when,
        "receiveTime": "2026-01-02T10:30:00.5-03:00",
    }
    result = check(dumps(trade))
    assert isinstance(result, Trade)
    assert result.venue == "BINANCE"
    assert result.symbol == "BTCUSDT"
    assert result.receive_time == datetime(2026, 1, 2, 13, 30, 0, 500000, tzinfo=UTC)
    del trade["aggressorSide"]
    assert check(dumps(trade)) is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("price", 1.5),  # a float
        ("price", "0"),  # not positive
        ("quantity", "-1"),
        ("price", "1e999999999"),  # huge exponent
        ("price", "\u0661"),  # a non-ASCII digit
        ("eventTime", "2026-01-02T13:30:00"),  # naive
        ("eventTime", 1767360600),
        ("schemaVersion", 2),
        ("type", "Quote"),
        ("extra", "x"),
        ("trade_id", "1"),  # the Python name beside the wire name
        ("aggressorSide", "buy"),
        ("symbol", "PETR\uff14"),
    ],
)
def test_doubtful_trades_fall_back(key: str, value: Any) -> None:
    payload = json.loads(EXAMPLES_BY_TYPE[Trade].to_json_bytes())
    payload[key] = value
    assert fast_decode(dumps(payload)) is None
    check(dumps(payload))


@pytest.mark.parametrize(
    "change",
    [
        {"bidPrice": "94113"},  # crossed
        {"bidPrice": None},  # half a side
        {"askQuantity": None},
        {"updateId": -1},
        {"updateId": "5"},
        {"updateId": 5.0},
    ],
)
def test_doubtful_quotes_fall_back(change: dict[str, Any]) -> None:
    payload = json.loads(EXAMPLES_BY_TYPE[BestBidAsk].to_json_bytes())
    payload.update(change)
    assert fast_decode(dumps(payload)) is None
    check(dumps(payload))


def test_missing_keys_and_bad_bytes_fall_back() -> None:
    raw = EXAMPLES_BY_TYPE[Trade].to_json_bytes()
    payload = json.loads(raw)
    for key in payload:
        if key != "aggressorSide":
            smaller = {k: v for k, v in payload.items() if k != key}
            assert fast_decode(dumps(smaller)) is None, key
            check(dumps(smaller))
    for bad in (b"\xef\xbb\xbf" + raw, raw.decode().encode("utf-16"), raw + b"x", b"[]", b""):
        assert fast_decode(bad) is None
        check(bad)


EXAMPLES_BY_TYPE: dict[Model, Any] = {
    type(m): m for m in EXAMPLES if type(m) in (Trade, BestBidAsk)
}


def test_every_example_decodes_identically() -> None:
    examples = [m for m in EXAMPLES if isinstance(m, Trade | BestBidAsk)]
    assert {type(m) for m in examples} == {Trade, BestBidAsk}
    for message in examples:
        raw = message.to_json_bytes()
        fast = check(raw)
        assert fast is not None  # and identical to pydantic's (check)
        assert fast == message
        assert repr(fast) == repr(message)
    for message in EXAMPLES:  # the other classes are not the fast path's business
        if not isinstance(message, Trade | BestBidAsk):
            assert fast_decode(message.to_json_bytes()) is None


def test_sample_tape_decodes_identically() -> None:
    def records() -> Any:
        for frame in read_tape(sample_tape_path()):
            for record in parse_frame(frame.vendor, frame.raw, frame.receive_time).records:
                if isinstance(record, Trade | BestBidAsk):
                    yield record

    checked = 0
    for record in itertools.islice(records(), 2000):
        raw = record.to_json_bytes()
        fast = check(raw)
        assert fast is not None, raw  # and identical to pydantic's (check)
        assert fast == record
        assert repr(fast) == repr(record)
        checked += 1
    assert checked == 2000


def test_the_flow_decodes_a_batch_as_record_by_record() -> None:
    from bytewax.connectors.kafka import KafkaSourceMessage

    from brokerflow.flows.stats import TickIn, decode_batch, decode_record

    received = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
    trade = EXAMPLES_BY_TYPE[Trade].to_json_bytes()
    quote = EXAMPLES_BY_TYPE[BestBidAsk].to_json_bytes()
    crossed_quote = dumps(crossed(json.loads(quote)))
    spaced = dumps({**json.loads(trade), "symbol": " btcusdt"})  # valid, but not the fast path
    values = [trade, quote, crossed_quote, spaced, b"not json", None, quote]
    topics = ["trades", "book", "book", "trades", "trades", "book", "trades"]
    batch = [
        KafkaSourceMessage(key=b"k", value=value, topic=topic, partition=0, offset=n)
        for n, (value, topic) in enumerate(zip(values, topics, strict=True))
    ]
    expected = {"trades": Trade, "book": BestBidAsk}
    out = decode_batch(batch, received, expected)
    assert len(out) == len(batch)
    for msg, item in zip(batch, out, strict=True):
        one = decode_record(msg, received, expected)
        if isinstance(one, TickIn):
            assert item == (one.tick.symbol, one)
        else:
            assert item == one
    assert [type(item) is tuple for item in out] == [True, True, False, True, False, False, True]
