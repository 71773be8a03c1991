"""Pure: does today's matching code reproduce what the exchange recorded?

The exchange is deterministic: its outputs are a function of the command log (``order-commands-
v1``) and the rules. :func:`replay_range` runs the commands of a range through the same core the
worker runs, the same way (:func:`~brokerflow.exchange.state.engine_command`, the repeated
``CloseSession`` skipped, undecodable records skipped), starting from the state the commands
before the range leave (the command log is kept for ever, so the state at any offset is a pure
function of it). Each event it emits is tagged with the command (partition, offset) that caused
it. :func:`first_divergence` then walks each symbol's recorded events (``order-events-v1`` and
``trade-executions-v1`` share one sequence per symbol) beside the replayed ones and returns the
first that differs, ignoring only the fields declared volatile.

Which recorded events belong to the range: those after the symbol's sequence at the range's
start, up to as many as the replay emitted, and beyond that any whose ``eventTime`` is not after
the range's last command of that symbol (event times are the commands' own), so a replay that
emits fewer events than were recorded is caught too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from brokerflow.exchange.state import engine_command
from brokerflow.matching import Exchange, SymbolRules
from brokerflow.matching.wire import to_json
from brokerflow.schemas import CloseSession, Message
from brokerflow.schemas.base import format_utc

__all__ = [
    "VOLATILE_FIELDS",
    "CommandRecord",
    "Divergence",
    "ReplayResult",
    "book_at",
    "first_divergence",
    "replay_range",
]

#: Fields that may differ between a run and its replay without meaning anything: when a record
#: was received (the exchange's events carry none today; kept here so a field added later is
#: declared in one place).
VOLATILE_FIELDS = frozenset({"receiveTime"})

Position = tuple[int, int]  # (partition, offset) of a command on order-commands-v1


@dataclass(frozen=True, slots=True)
class CommandRecord:
    partition: int
    offset: int
    #: The decoded command, or None for a record the agent would dead-letter and skip.
    message: Message | None

    @property
    def position(self) -> Position:
        return (self.partition, self.offset)


@dataclass
class ReplayResult:
    #: Per symbol: the events the range caused, as wire JSON objects, with their command.
    events: dict[str, list[tuple[dict[str, Any], Position]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    #: Per symbol: the last sequence the commands before the range left (0: none).
    start_sequence: dict[str, int] = field(default_factory=dict)
    #: Per symbol: the event time of the range's last command, as the events spell it.
    last_time: dict[str, str] = field(default_factory=dict)
    commands: int = 0
    skipped: int = 0


class _Runner:
    """The pure core driven as the matching agent drives it."""

    def __init__(self, rules: Mapping[str, SymbolRules]) -> None:
        self.exchange = Exchange(dict(rules))
        self.closed: dict[str, date] = {}
        self.sequence: dict[str, int] = defaultdict(int)

    def apply(self, message: Message) -> list[dict[str, Any]] | None:
        symbol: str = message.__dict__["symbol"]
        if isinstance(message, CloseSession) and message.session_date is not None:
            last = self.closed.get(symbol)
            if last is not None and message.session_date <= last:
                return None
            self.closed[symbol] = message.session_date
        engine = self.exchange.engine(symbol)
        command = engine_command(message, engine.rules)
        events = [json.loads(to_json(event)) for event in engine.process(command)]
        for event in events:
            self.sequence[symbol] = max(self.sequence[symbol], int(event["sequence"]))
        return events


def replay_range(
    before: Iterable[CommandRecord],
    selected: Iterable[CommandRecord],
    rules: Mapping[str, SymbolRules],
    keep: Callable[[str], bool] = lambda _symbol: True,
) -> ReplayResult:
    """Build the state from ``before``, then replay ``selected``; only symbols ``keep`` accepts
    are reported (a key filter: the other symbols' commands still run, as they did)."""
    runner = _Runner(rules)
    for record in before:
        if record.message is not None:
            runner.apply(record.message)
    result = ReplayResult(start_sequence=dict(runner.sequence))
    for record in selected:
        if record.message is None:
            result.skipped += 1
            continue
        symbol = record.message.__dict__["symbol"]
        events = runner.apply(record.message)
        result.commands += 1
        if not keep(symbol):
            continue
        result.start_sequence.setdefault(symbol, 0)
        result.last_time[symbol] = format_utc(record.message.__dict__["event_time"])
        for event in events or ():
            result.events[symbol].append((event, record.position))
    return result


@dataclass(frozen=True, slots=True)
class Divergence:
    symbol: str
    sequence: int
    #: The command that caused the replayed event (None: the replay has no event there).
    command: Position | None
    recorded: dict[str, Any] | None
    replayed: dict[str, Any] | None

    def describe(self) -> str:
        where = (
            f"order-commands-v1 partition {self.command[0]} offset {self.command[1]}"
            if self.command
            else "after the range's last replayed event"
        )
        return (
            f"{self.symbol} sequence {self.sequence} (input: {where})\n"
            f"  recorded: {json.dumps(self.recorded, sort_keys=True)}\n"
            f"  replayed: {json.dumps(self.replayed, sort_keys=True)}"
        )


def _stable(event: dict[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {k: v for k, v in event.items() if k not in VOLATILE_FIELDS}


def first_divergence(
    recorded: Mapping[str, list[dict[str, Any]]], result: ReplayResult
) -> Divergence | None:
    """The first event, by symbol then sequence, where the recording and the replay differ."""
    found: list[Divergence] = []
    for symbol in sorted(result.start_sequence):
        start = result.start_sequence[symbol]
        mine = result.events.get(symbol, [])
        theirs = sorted(
            (e for e in recorded.get(symbol, []) if int(e["sequence"]) > start),
            key=lambda e: int(e["sequence"]),
        )
        last_time = result.last_time.get(symbol, "")
        for index in range(max(len(mine), len(theirs))):
            replayed, command = mine[index] if index < len(mine) else (None, None)
            original = theirs[index] if index < len(theirs) else None
            if replayed is None and original is not None and original["eventTime"] > last_time:
                break  # a later command's event: the range is over
            if _stable(replayed) != _stable(original):
                sequence = int((replayed or original or {}).get("sequence", start + index + 1))
                found.append(Divergence(symbol, sequence, command, original, replayed))
                break
    if not found:
        return None
    # The earliest input wins; a missing event (no command) sorts last.
    return min(found, key=lambda d: (d.command is None, d.command or (0, 0), d.symbol))


def book_at(
    records: Iterable[CommandRecord], rules: Mapping[str, SymbolRules], symbol: str, levels: int
) -> dict[str, Any]:
    """The symbol's book after ``records`` (the command log up to a point), top ``levels``."""
    runner = _Runner(rules)
    applied = 0
    for record in records:
        if record.message is not None:
            runner.apply(record.message)
            applied += 1
    depth = runner.exchange.engine(symbol).depth(levels)
    return {
        "symbol": symbol,
        "commands": applied,
        "sequence": runner.sequence.get(symbol, 0),
        "bids": [[str(lv.price), str(lv.quantity), lv.orders] for lv in depth.bids],
        "asks": [[str(lv.price), str(lv.quantity), lv.orders] for lv in depth.asks],
    }
