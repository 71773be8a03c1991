"""Benchmark of the matching core and of ``brokerflow match``.

Run ``python bench/bench_matching.py`` (``--commands N`` to change the tape size). It generates a
fixed, seeded tape of order commands over several symbols (limits near the touch, marketable
limits, cancels, a few market/IOC/FOK/DAY orders and amends; about half the commands trade), then
prints:

* core-only throughput: ``engine.process`` over pre-decoded commands, best of three runs;
* per-command latency p50/p99 (``time.perf_counter_ns`` around each ``process``, a separate run);
* whole-process throughput of ``python -m brokerflow.matching.replay`` on the same tape written to
  a file, output to /dev/null (interpreter start-up included);
* trade and event counts, the machine and the command.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from brokerflow.matching import Command, Exchange, SymbolRules
from brokerflow.matching.events import TRADE_EXECUTED
from brokerflow.matching.replay import BadLineError, TapeDecoder
from brokerflow.matching.rules import rules_from_wire
from brokerflow.tapes.orders import SEED, SYMBOLS, generate_tape, rules_document

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model


def decode_tape(lines: Sequence[str], rules: dict[str, SymbolRules]) -> list[Command]:
    """Book-unit commands of a tape (decoding is the edge's job, not timed)."""
    decoder = TapeDecoder(Exchange(rules))
    commands: list[Command] = []
    for line in lines:
        try:
            decoded = decoder.decode(line)
        except BadLineError as exc:  # the generator writes none; fail loudly if it ever does
            raise SystemExit(f"generated a bad line: {exc}: {line}") from None
        if decoded is not None and decoded[0] is not None:
            commands.append(decoded[1])
    return commands


def bind(commands: Sequence[Command], rules: dict[str, SymbolRules]) -> list[tuple[Any, Command]]:
    """Fresh engines, and each command paired with its engine's bound ``process``."""
    exchange = Exchange(rules)
    process_by_symbol: dict[str, Callable[[Command], Any]] = {}
    for symbol, *_ in SYMBOLS:
        process_by_symbol[symbol] = exchange.engine(symbol).process
    return [(process_by_symbol[command.symbol], command) for command in commands]


def run_core(commands: Sequence[Command], rules: dict[str, SymbolRules]) -> float:
    """Seconds for ``engine.process`` over the tape: the only thing inside the clock."""
    pairs = bind(commands, rules)
    gc.collect()
    started = time.perf_counter()
    for process, command in pairs:
        process(command)
    return time.perf_counter() - started


def count_outcomes(
    commands: Sequence[Command], rules: dict[str, SymbolRules]
) -> tuple[int, int, int]:
    """Events, trades, and commands that traded at least once (an untimed run)."""
    exchange = Exchange(rules)
    events = trading = 0
    for command in commands:
        emitted = exchange.process(command)
        events += len(emitted)
        trading += any(event[0] == TRADE_EXECUTED for event in emitted)
    trades = sum(engine.trade_count for engine in exchange.engines.values())
    return events, trades, trading


def run_latency(commands: Sequence[Command], rules: dict[str, SymbolRules]) -> list[int]:
    pairs = bind(commands, rules)
    clock = time.perf_counter_ns
    samples = [0] * len(pairs)
    gc.collect()
    for index, (process, command) in enumerate(pairs):
        started = clock()
        process(command)
        samples[index] = clock() - started
    return samples


def run_process(tape_path: str, rules_path: str) -> float:
    command = [
        sys.executable,
        "-m",
        "brokerflow.matching.replay",
        "--rules",
        rules_path,
        tape_path,
    ]
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        subprocess.run(command, stdout=sink, check=True)
    return time.perf_counter() - started


def percentile(sorted_samples: Sequence[int], fraction: float) -> int:
    return sorted_samples[min(len(sorted_samples) - 1, int(fraction * len(sorted_samples)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=250_000, help="tape length")
    parser.add_argument("--runs", type=int, default=3, help="core runs (best is reported)")
    args = parser.parse_args(argv)

    uname = platform.uname()
    print(
        f"machine: {uname.system} {uname.release} {uname.machine}, CPU {cpu_model()}, "
        f"{os.cpu_count()} logical cores"
    )
    print(f"python: {platform.python_implementation()} {platform.python_version()}")
    print(f"command: python bench/bench_matching.py {' '.join(argv or sys.argv[1:])}".rstrip())

    lines = generate_tape(args.commands)
    rules_doc = rules_document()
    rules = rules_from_wire(rules_doc)
    commands = decode_tape(lines, rules)
    print(f"tape: {len(commands)} commands over {len(SYMBOLS)} symbols (seed {SEED})")

    timings = [run_core(commands, rules) for _ in range(args.runs)]
    best = min(timings)
    events, trades, trading = count_outcomes(commands, rules)
    print(
        f"core (engine.process only): {len(commands) / best:,.0f} commands/s "
        f"(best of {args.runs}: {best:.3f} s; median {statistics.median(timings):.3f} s)"
    )
    print(
        f"  {events:,} events, {trades:,} trades, {trading / len(commands):.0%} of commands traded"
    )

    samples = sorted(run_latency(commands, rules))
    print(
        "latency per command (perf_counter_ns around each process call, clock cost included): "
        f"p50 {percentile(samples, 0.50) / 1000:.2f} us, "
        f"p99 {percentile(samples, 0.99) / 1000:.2f} us, "
        f"p99.9 {percentile(samples, 0.999) / 1000:.2f} us, max {samples[-1] / 1000:.0f} us"
    )

    with tempfile.TemporaryDirectory() as folder:
        tape_path = os.path.join(folder, "tape.jsonl")
        rules_path = os.path.join(folder, "rules.json")
        with open(tape_path, "w", encoding="utf-8") as tape:
            tape.write("\n".join(lines) + "\n")
        with open(rules_path, "w", encoding="utf-8") as rules_file:
            json.dump(rules_doc, rules_file)
        process_times = [run_process(tape_path, rules_path) for _ in range(2)]
    best_process = min(process_times)
    print(
        f"brokerflow match (python -m brokerflow.matching.replay, whole process, "
        f"stdout to /dev/null): {len(lines) / best_process:,.0f} commands/s "
        f"(best of 2: {best_process:.3f} s)"
    )
    print(
        f"ratio brokerflow match / core: {len(lines) / best_process / (len(commands) / best):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
