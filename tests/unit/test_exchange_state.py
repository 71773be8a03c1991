"""Table keys and records of the exchange agents, and books rebuilt from them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from brokerflow.exchange.state import (
    CLOSED_MARKER,
    NEXT_OFFSET_KEY,
    SymbolRecord,
    decode_order_record,
    encode_order_record,
    engine_command,
    next_offset,
    next_offset_record,
    order_key,
    rebuild_engines,
    split_order_key,
)
from brokerflow.matching import (
    DEFAULT_RULES,
    Cancel,
    CloseSession,
    MatchingEngine,
    NewOrder,
    Reject,
    RestingOrder,
    SetReferencePrice,
    SymbolRules,
    to_json_lines,
)
from brokerflow.schemas.examples import (
    AMEND_ORDER,
    CANCEL_ORDER,
    CLOSE_SESSION,
    PLACE_ORDER,
    SET_REFERENCE_PRICE,
)

T = "2026-01-02T13:00:00.000000Z"


def test_order_key_puts_the_symbol_first_and_splits_back_even_with_separators_in_the_id() -> None:
    assert order_key("PETR4", "o1") == b"PETR4|o1"
    assert split_order_key(order_key("BTC-USD", "a|b|c")) == ("BTC-USD", "a|b|c")


@pytest.mark.parametrize("key", [b"PETR4", b"|o1", b"PETR4|"])
def test_split_order_key_refuses_what_order_key_never_makes(key: bytes) -> None:
    with pytest.raises(ValueError, match=r"symbol\|orderId"):
        split_order_key(key)


def test_order_record_round_trips_and_none_is_the_closed_marker() -> None:
    order = RestingOrder("o1", "a1", "BUY", 3852, 10, 4, "DAY", 7)
    decoded = decode_order_record(encode_order_record(order))
    assert decoded is not None
    assert decoded.to_record() == order.to_record()
    assert encode_order_record(None) == CLOSED_MARKER
    assert decode_order_record(CLOSED_MARKER) is None


def test_symbol_record_round_trips_with_and_without_a_closed_session() -> None:
    engine = MatchingEngine("PETR4")
    engine.process(SetReferencePrice("PETR4", Decimal("38.5")))
    for closed in (None, date(2026, 1, 2)):
        for offset in (None, 0, 41):
            record = SymbolRecord(engine.state(), closed, next_offset=offset)
            assert SymbolRecord.from_bytes(record.to_bytes()) == record


def test_next_offset_is_the_highest_any_state_record_of_the_partition_carries() -> None:
    state = MatchingEngine("PETR4").state()
    records = [
        (b"PETR4", SymbolRecord(state, next_offset=17).to_bytes()),
        (b"VALE3", SymbolRecord(state, next_offset=23).to_bytes()),
        (b"ITUB4", SymbolRecord(state).to_bytes()),  # written before offsets were recorded
    ]
    assert next_offset(records) == 23
    # A later command that touched no symbol (a dead letter) moved the partition on.
    assert next_offset([*records, (NEXT_OFFSET_KEY, next_offset_record(30))]) == 30
    # ... but an older one of those does not move it back.
    assert next_offset([*records, (NEXT_OFFSET_KEY, next_offset_record(5))]) == 23
    assert next_offset([]) is None
    assert next_offset([(b"ITUB4", SymbolRecord(state).to_bytes())]) is None


def test_rebuild_ignores_the_partition_offset_record() -> None:
    states = {
        b"PETR4": SymbolRecord(MatchingEngine("PETR4").state(), next_offset=3).to_bytes(),
        NEXT_OFFSET_KEY: next_offset_record(4),
    }
    assert list(rebuild_engines(states.items(), [], lambda _: DEFAULT_RULES)) == ["PETR4"]


def _persist(engine: MatchingEngine, store: dict[bytes, bytes], states: dict[bytes, bytes]) -> None:
    for order_id, order in engine.changes:
        store[order_key(engine.symbol, order_id)] = encode_order_record(order)
    states[engine.symbol.encode()] = SymbolRecord(engine.state()).to_bytes()


def test_books_rebuilt_from_per_order_records_continue_exactly_like_the_original() -> None:
    original = MatchingEngine("PETR4")
    orders: dict[bytes, bytes] = {}
    states: dict[bytes, bytes] = {}
    commands = [
        NewOrder("PETR4", "s1", "a1", "SELL", "LIMIT", "GTC", 10, 3852, T),
        NewOrder("PETR4", "s2", "a2", "SELL", "LIMIT", "DAY", 5, 3852, T),
        NewOrder("PETR4", "b1", "a3", "BUY", "LIMIT", "GTC", 12, 3852, T),
        NewOrder("PETR4", "b2", "a3", "BUY", "LIMIT", "GTC", 4, 3840, T),
        Cancel("PETR4", "b2", T),
    ]
    for command in commands:
        original.process(command)
        _persist(original, orders, states)
    rebuilt = rebuild_engines(states.items(), orders.items(), lambda _: DEFAULT_RULES)
    engine, closed = rebuilt["PETR4"]
    assert closed is None
    assert engine.state() == original.state()
    assert [o.to_record() for o in engine.resting_orders()] == [
        o.to_record() for o in original.resting_orders()
    ]
    assert engine.closed_order_ids() == original.closed_order_ids() == {"s1", "b1", "b2"}
    after = [
        NewOrder("PETR4", "s1", "a1", "SELL", "LIMIT", "GTC", 1, 3852, T),  # duplicate id
        NewOrder("PETR4", "b3", "a4", "BUY", "MARKET", "IOC", 9, None, T),
        CloseSession("PETR4", T),
    ]
    assert [to_json_lines(engine.process(c)) for c in after] == [
        to_json_lines(original.process(c)) for c in after
    ]


def test_rebuild_refuses_orders_without_a_state_record() -> None:
    with pytest.raises(ValueError, match="damaged"):
        rebuild_engines([], [(b"PETR4|o1", CLOSED_MARKER)], lambda _: DEFAULT_RULES)


def test_engine_command_converts_each_wire_command_like_the_replay() -> None:
    rules = SymbolRules(lot_size=Decimal("100"))
    assert engine_command(PLACE_ORDER, rules) == NewOrder(
        "PETR4", "ord-0001", "acc-42", "BUY", "LIMIT", "DAY", 1, 3812, "2026-01-02T13:30:00.123000Z"
    )
    assert engine_command(CANCEL_ORDER, rules) == Cancel(
        "PETR4", "ord-0003", "2026-01-02T13:31:00.000000Z"
    )
    amend = engine_command(AMEND_ORDER, rules)  # 60 is not a whole number of 100-share lots
    assert isinstance(amend, Reject)
    assert amend.reason == "LOT_SIZE"
    assert engine_command(CLOSE_SESSION, rules) == CloseSession(
        "PETR4", "2026-01-02T20:00:00.000000Z"
    )
    assert engine_command(SET_REFERENCE_PRICE, rules) == SetReferencePrice(
        "PETR4", Decimal("38.10")
    )
