"""The exchange's state after many orders: bounded by a session, not by every order ever placed.

Run ``python bench/bench_exchange_memory.py`` (``--orders N``, ``--session N``). It feeds the
seeded tape of ``bench/bench_matching.py`` (N commands over 8 symbols) through the matching core,
keeping the store the exchange agent writes (one record per order id: the resting order or a
closed marker; deleted when a session close forgets the id) exactly as the agent does from
``engine.changes`` and ``engine.forgotten``. Twice: with a session close every ``--session``
commands, and with none (order ids kept forever, as before sessions scoped them). Prints the
store's records and the memory the engines and the store hold at the end (``tracemalloc``),
per order placed, with the machine and the command. No services needed.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from brokerflow.exchange.state import encode_order_record, order_key
from brokerflow.matching import Exchange
from brokerflow.matching.replay import TapeDecoder
from brokerflow.matching.rules import rules_from_wire

sys.path.insert(0, str(Path(__file__).parent))
import bench_matching
from _common import machine_line


def run(lines: list[str], session: int | None) -> tuple[int, int, int, int, float]:
    """(orders placed, store records at the end, most store records at once, bytes held by the
    engines and the store at the end, seconds)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    exchange = Exchange(rules_from_wire(bench_matching.rules_document()))
    decoder = TapeDecoder(exchange)
    store: dict[bytes, bytes] = {}
    most = placed = 0
    for number, line in enumerate(lines, 1):
        decoded = decoder.decode(line)
        if decoded is None:
            continue
        engine, command = decoded
        placed += '"op":"new"' in line
        if engine is not None:
            engine.process(command)
            symbol = engine.symbol
            for order_id, order in engine.changes:
                store[order_key(symbol, order_id)] = encode_order_record(order)
            for order_id in engine.forgotten:
                del store[order_key(symbol, order_id)]
        most = max(most, len(store))
        if session is not None and number % session == 0:
            for engine in list(exchange.engines.values()):
                engine.close_session("2026-01-02T21:00:00.000000Z")
                for order_id, order in engine.changes:
                    store[order_key(engine.symbol, order_id)] = encode_order_record(order)
                for order_id in engine.forgotten:
                    del store[order_key(engine.symbol, order_id)]
    elapsed = time.perf_counter() - started
    del decoder, lines
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    records = len(store)
    del exchange, store
    return placed, records, most, held, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="tape length (commands)")
    parser.add_argument("--session", type=int, default=100_000, help="commands per session")
    args = parser.parse_args(argv)
    lines = bench_matching.generate_tape(args.orders)
    runs = ((f"a session close every {args.session:,} commands", args.session), ("no close", None))
    for label, session in runs:
        placed, records, most, held, elapsed = run(list(lines), session)
        print(
            f"{label}: {placed:,} orders placed; store records at the end {records:,} "
            f"(most at once {most:,}); engines + store hold {held / 1e6:,.1f} MB "
            f"({held / placed:,.1f} bytes per order placed); {elapsed:.1f} s"
        )
    print(machine_line())
    print(
        "command: python bench/bench_exchange_memory.py "
        f"--orders {args.orders} --session {args.session}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
