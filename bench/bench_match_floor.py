"""How fast could ``brokerflow match`` be in CPython at best? The floor of its decode and encode.

Run ``python bench/bench_match_floor.py`` (``--commands N``). On the seeded tape of
``bench/bench_matching.py`` it times, best of 3 each, per command:

* the core (``engine.process`` over pre-decoded commands, as ``bench_matching.py`` measures it);
* decoding the lines: ``json.loads``, msgspec's generic decoder (to dicts: the cheapest a JSON
  line becomes Python objects), and ``TapeDecoder`` (what ``brokerflow match`` does: JSON,
  checks, book units);
* encoding the events: the hand-written ``to_json`` (what ``brokerflow match`` does), msgspec of
  the ``to_wire`` dict, and msgspec of the bare event tuple (no field names, not the wire format:
  a lower bound for any encoder that has to visit the event's fields).

Then the floor: msgspec's generic decode + the core + msgspec of the bare tuples, against the
core. It leaves out turning a decoded line into a book-unit command, so the real floor is lower.
No services needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from brokerflow.matching import Exchange
from brokerflow.matching.replay import TapeDecoder
from brokerflow.matching.rules import rules_from_wire
from brokerflow.matching.wire import to_json_lines, to_wire

sys.path.insert(0, str(Path(__file__).parent))
import bench_matching
from _common import machine_line


def best_of(runs: int, timed: Callable[[], float]) -> float:
    return min(timed() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000)
    args = parser.parse_args(argv)
    lines = bench_matching.generate_tape(args.commands)
    rules = rules_from_wire(bench_matching.rules_document())
    commands = bench_matching.decode_tape(lines, rules)
    events = []
    exchange = Exchange(rules)
    for command in commands:
        events.extend(exchange.engine(command.symbol).process(command))

    def clock(work: Callable[[], object]) -> Callable[[], float]:
        def timed() -> float:
            gc.collect()
            started = time.perf_counter()
            work()
            return time.perf_counter() - started

        return timed

    def decode_all(tape: list[str]) -> list[object]:
        tape_decoder = TapeDecoder(Exchange(rules))
        return [tape_decoder.decode(line) for line in tape]

    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()
    figures = {
        "core (engine.process)": best_of(3, lambda: bench_matching.run_core(commands, rules)),
        "decode: json.loads": best_of(3, clock(lambda: [json.loads(line) for line in lines])),
        "decode: msgspec, generic": best_of(
            3, clock(lambda: [decoder.decode(line) for line in lines])
        ),
        "decode: TapeDecoder (brokerflow match)": best_of(3, clock(lambda: decode_all(lines))),
        "encode: to_json (brokerflow match)": best_of(3, clock(lambda: to_json_lines(events))),
        "encode: msgspec of to_wire dicts": best_of(
            3, clock(lambda: [encoder.encode(to_wire(event)) for event in events])
        ),
        "encode: msgspec of bare tuples": best_of(
            3, clock(lambda: [encoder.encode(event[2:]) for event in events])
        ),
    }
    per = 1e6 / args.commands
    print(
        f"tape: {args.commands} commands, {len(events)} events "
        f"({len(events) / args.commands:.2f} per command)"
    )
    for name, seconds in figures.items():
        print(f"{name:<42} {seconds:6.3f} s  {seconds * per:5.2f} us/command")
    core = figures["core (engine.process)"]
    floor = core + figures["decode: msgspec, generic"] + figures["encode: msgspec of bare tuples"]
    now = (
        core
        + figures["decode: TapeDecoder (brokerflow match)"]
        + figures["encode: to_json (brokerflow match)"]
    )
    print(
        f"floor: msgspec decode + core + msgspec of bare tuples = {floor:.3f} s, "
        f"{args.commands / floor:,.0f} commands/s, {core / floor:.2f} of the core"
    )
    print(
        f"in process now: TapeDecoder + core + to_json = {now:.3f} s, "
        f"{args.commands / now:,.0f} commands/s, {core / now:.2f} of the core (the whole process "
        "also reads, writes and starts: bench_matching.py)"
    )
    print(machine_line())
    print(f"command: python bench/bench_match_floor.py --commands {args.commands}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
