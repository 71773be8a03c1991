"""The exchange's state is bounded by a session, not by every order ever placed.

The bench tape (8 symbols) goes through the core with the store the agent keeps (one record per
order id, written from ``engine.changes``, deleted for ``engine.forgotten``); a session closes
every 2,000 commands. After each close the store holds exactly the resting orders, and in
between never more than those plus the ids the session has seen.
``bench/bench_exchange_memory.py`` measures the same at 1,000,000 orders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from brokerflow.exchange.state import decode_order_record, encode_order_record, order_key
from brokerflow.matching import Exchange, MatchingEngine
from brokerflow.matching.replay import TapeDecoder
from brokerflow.matching.rules import rules_from_wire

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import bench_matching

SESSION = 2_000


def write(store: dict[bytes, bytes], engine: MatchingEngine) -> None:
    for order_id, order in engine.changes:
        store[order_key(engine.symbol, order_id)] = encode_order_record(order)
    for order_id in engine.forgotten:
        del store[order_key(engine.symbol, order_id)]


def test_the_store_holds_the_resting_orders_after_each_close_and_one_session_at_most() -> None:
    exchange = Exchange(rules_from_wire(bench_matching.rules_document()))
    decoder = TapeDecoder(exchange)
    store: dict[bytes, bytes] = {}
    placed_in_session = 0
    resting_at_start = 0  # orders resting when the session began
    closes = 0
    for number, line in enumerate(bench_matching.generate_tape(20_000), 1):
        decoded = decoder.decode(line)
        assert decoded is not None
        assert decoded[0] is not None
        engine, command = decoded
        engine.process(command)
        write(store, engine)
        placed_in_session += '"op":"new"' in line
        assert len(store) <= resting_at_start + placed_in_session
        if number % SESSION == 0:
            for each in exchange.engines.values():
                each.close_session("2026-01-02T21:00:00.000000Z")
                write(store, each)
                assert each.closed_order_ids() == set()
            closes += 1
            placed_in_session = 0
            resting_keys = {
                order_key(e.symbol, o.order_id)
                for e in exchange.engines.values()
                for o in e.resting_orders()
            }
            assert set(store) == resting_keys
            resting_at_start = len(resting_keys)
            assert all(decode_order_record(value) is not None for value in store.values())
    assert closes == 10
    # Without the closes the store would hold a record per order ever placed (about 17,000).
    assert len(store) < 2_000
