"""``brokerflow match``: replay an order-command tape through the matching core.

Reads JSON lines from a file (or ``-`` for stdin) and writes the events they cause to stdout, one
compact JSON object per line in processing order, in the wire shape of
:mod:`brokerflow.schemas.orders` and :mod:`brokerflow.schemas.trades`. Input lines::

    {"op":"new","orderId":"o1","accountId":"a1","symbol":"PETR4","side":"BUY","type":"LIMIT",
     "timeInForce":"GTC","quantity":100,"price":"38.52"}
    {"op":"cancel","orderId":"o1","symbol":"PETR4"}
    {"op":"amend","orderId":"o1","symbol":"PETR4","quantity":50,"price":"38.50"}
    {"op":"close","symbol":"PETR4"}          (session close: DAY orders expire; no symbol = all)
    {"op":"reference","symbol":"PETR4","price":"38.40"}   (reference price for price bands)

``timeInForce`` defaults to GTC; ``type`` may also be spelled ``orderType``; ``price`` is null or
absent for MARKET. Prices and quantities are decimal strings or JSON integers: a JSON number with a
fraction or exponent is a float, inexact, and refused. Any line may carry an ``eventTime`` (ISO 8601
with a zone); events carry it normalised to UTC with microseconds and ``Z``, or
``1970-01-01T00:00:00.000000Z`` when the line has none: deterministic and clearly synthetic.
``accountId`` is accepted on cancel and amend lines and ignored.

What the wire schema would refuse (missing or malformed fields, unknown keys, floats, non-positive
numbers) is a *bad line*: reported on stderr as ``line N: reason`` and skipped. What the exchange
refuses (tick or lot size, price band, unknown order...) is an ``OrderRejected`` event on stdout.
The exit code is 0 unless the input or the ``--rules`` file could not be read (then 2).

Rules come from the instrument catalog (``INSTRUMENTS_PATH`` or the bundled one), as the exchange
worker's do; symbols without rules get the defaults (tick 0.01, lot 1, no band, no self-trade
prevention), so any tape replays. ``--rules FILE`` (default ``EXCHANGE_RULES_PATH``) overrides the
catalog per symbol: a JSON object ``{"PETR4": {"tickSize": "0.01", "lotSize": "100",
"priceBandPct": "10", "selfTradePrevention": "CANCEL_NEWEST"}}`` (numbers are read as exact
decimals there, so ``"tickSize": 0.05`` works too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TextIO

from brokerflow.errors import ConfigError
from brokerflow.matching.commands import (
    AMEND_ORDER,
    BUY,
    DAY,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    PLACE_ORDER,
    SELL,
    Amend,
    Cancel,
    CloseSession,
    Command,
    NewOrder,
    Reject,
    SetReferencePrice,
)
from brokerflow.matching.engine import MatchingEngine, is_symbol
from brokerflow.matching.events import Reason
from brokerflow.matching.exchange import (
    EPOCH_TIME,
    Exchange,
    format_event_time,
    lot_size_detail,
    tick_size_detail,
)
from brokerflow.matching.rules import SymbolRules, rules_from_wire
from brokerflow.matching.wire import JSON_ENCODERS

__all__ = ["BadLineError", "ReplayStats", "TapeDecoder", "load_rules", "main", "replay"]

_NEW_KEYS = frozenset(
    (
        "op",
        "orderId",
        "accountId",
        "symbol",
        "side",
        "type",
        "orderType",
        "timeInForce",
        "quantity",
        "price",
        "eventTime",
    )
)
_CANCEL_KEYS = frozenset(("op", "orderId", "accountId", "symbol", "eventTime"))
_AMEND_KEYS = frozenset(("op", "orderId", "accountId", "symbol", "quantity", "price", "eventTime"))
_CLOSE_KEYS = frozenset(("op", "symbol", "eventTime"))
_REFERENCE_KEYS = frozenset(("op", "symbol", "price", "eventTime"))
_SIDES = {BUY: BUY, SELL: SELL}
_ORDER_TYPES = {LIMIT: LIMIT, MARKET: MARKET}
_TIMES_IN_FORCE = {GTC: GTC, DAY: DAY, IOC: IOC, FOK: FOK}
_CACHE_LIMIT = 1 << 16
_scan_json = json.decoder.JSONDecoder().scan_once
_FLUSH_EVERY = 1 << 13  # lines of output buffered between writes


@dataclass(slots=True)
class ReplayStats:
    """What a replay did: input lines read, commands applied, bad lines skipped, output."""

    lines: int = 0
    commands: int = 0
    bad_lines: int = 0
    events: int = 0
    trades: int = 0


class BadLineError(ValueError):
    """A line the wire schema would refuse; the message names the field and the problem."""


class _Misfit(NamedTuple):
    """A well-formed decimal that is off the symbol's tick or lot grid."""

    reason: Reason
    detail: str


def _positive_decimal(field: str, raw: Any) -> Decimal:
    kind = type(raw)
    if kind is str:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise BadLineError(f"{field}: {raw!r} is not a decimal number") from None
    elif kind is int:
        value = Decimal(raw)
    elif kind is float:
        raise BadLineError(
            f"{field}: {raw!r} is a JSON float, which is inexact; send a decimal string "
            f'such as "{raw}"'
        )
    elif raw is None:
        raise BadLineError(f"{field}: required")
    else:
        raise BadLineError(f"{field}: expected a decimal string, got {type(raw).__name__}")
    if not value.is_finite() or value <= 0:
        raise BadLineError(f"{field}: must be a positive decimal, got {raw!r}")
    return value


def _identifier(field: str, raw: Any) -> str:
    if type(raw) is not str:
        raise BadLineError(
            f"{field}: required string" if raw is None else f"{field}: expected a string"
        )
    text = raw.strip()  # as the wire models do (str_strip_whitespace)
    if not 0 < len(text) <= 64:
        raise BadLineError(f"{field}: must be 1 to 64 characters")
    return text


def _choice(field: str, raw: Any, choices: Mapping[str, str]) -> str:
    try:
        return choices[raw]
    except (KeyError, TypeError):
        raise BadLineError(f"{field}: {raw!r} is not one of {', '.join(choices)}") from None


class _Symbol:
    """One symbol's engine and the conversion caches of its decimal texts."""

    __slots__ = ("engine", "lots", "rules", "symbol", "ticks")

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.symbol = engine.symbol
        self.rules: SymbolRules = engine.rules
        self.ticks: dict[str, int | _Misfit] = {}
        self.lots: dict[str, int | _Misfit] = {}

    def price_ticks(self, raw: Any) -> int | _Misfit:
        if type(raw) is str:
            cached = self.ticks.get(raw)
            if cached is not None:
                return cached
        price = _positive_decimal("price", raw)
        ticks = self.rules.price_to_ticks(price)
        if ticks is None:
            result: int | _Misfit = _Misfit(Reason.TICK_SIZE, tick_size_detail(self.rules, price))
        else:
            result = ticks
        if type(raw) is str:
            if len(self.ticks) >= _CACHE_LIMIT:
                self.ticks.clear()
            self.ticks[raw] = result
        return result

    def quantity_lots(self, raw: Any) -> int | _Misfit:
        if type(raw) is str or type(raw) is int:
            cached = self.lots.get(raw)  # type: ignore[arg-type]
            if cached is not None:
                return cached
        quantity = _positive_decimal("quantity", raw)
        lots = self.rules.quantity_to_lots(quantity)
        if lots is None:
            result: int | _Misfit = _Misfit(Reason.LOT_SIZE, lot_size_detail(self.rules, quantity))
        else:
            result = lots
        if type(raw) is str or type(raw) is int:
            if len(self.lots) >= _CACHE_LIMIT:
                self.lots.clear()
            self.lots[raw] = result  # type: ignore[index]
        return result


class TapeDecoder:
    """Turns tape lines into ``(engine, command)`` pairs of an exchange, caching what repeats.

    Raises :class:`BadLineError` for a line the wire schema would refuse.
    """

    __slots__ = ("exchange", "symbols", "times")

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.symbols: dict[str, _Symbol] = {}
        self.times: dict[str, str] = {}

    def decode(self, line: str) -> tuple[MatchingEngine | None, Command] | None:
        """``None`` for a blank line; ``(None, CloseSession)`` means every symbol."""
        try:
            # The json module's C scanner, without json.loads' wrappers; a line it does not take
            # whole (leading blanks, trailing data, not JSON) goes through json.loads below.
            data, end = _scan_json(line, 0)
            if end != len(line) and not line[end:].isspace():
                data = json.loads(line)
        except (StopIteration, ValueError, RecursionError):
            try:
                data = json.loads(line)
            except (ValueError, RecursionError) as exc:
                if not line.strip():
                    return None
                raise BadLineError(f"not JSON: {exc}") from None
        if type(data) is not dict:
            raise BadLineError("expected a JSON object")
        op = data.get("op")
        if op == "new":
            try:
                decoded = self._new_common(data)
            except TypeError:  # an unhashable value where a string belongs
                decoded = None
            return self._new(data) if decoded is None else decoded
        if op == "cancel":
            _check_keys(data, _CANCEL_KEYS)
            context = self._symbol(data.get("symbol"))
            order_id = _identifier("orderId", data.get("orderId"))
            command = Cancel(context.symbol, order_id, self._time(data.get("eventTime")))
            return context.engine, command
        if op == "amend":
            return self._amend(data)
        if op == "close":
            _check_keys(data, _CLOSE_KEYS)
            event_time = self._time(data.get("eventTime"))
            if data.get("symbol") is None:
                return None, CloseSession("*", event_time)
            context = self._symbol(data.get("symbol"))
            return context.engine, CloseSession(context.symbol, event_time)
        if op == "reference":
            _check_keys(data, _REFERENCE_KEYS)
            context = self._symbol(data.get("symbol"))
            price = _positive_decimal("price", data.get("price"))
            self._time(data.get("eventTime"))  # validated for consistency; no event carries it
            return context.engine, SetReferencePrice(context.symbol, price)
        raise BadLineError(f"op: {op!r} is not one of new, cancel, amend, close, reference")

    def _new_common(self, data: dict[str, Any]) -> tuple[MatchingEngine, Command] | None:
        """The usual well-formed PlaceOrder line, from the caches; ``None`` for anything else.

        Anything unusual (first sight of a symbol, price or quantity, an alias, a bad or off-grid
        value) returns ``None``, and :meth:`_new` decodes the line with every check and message.
        """
        if not data.keys() <= _NEW_KEYS:
            return None
        get = data.get
        context = self.symbols.get(get("symbol"))
        order_id = get("orderId")
        account_id = get("accountId")
        if context is None or type(order_id) is not str or type(account_id) is not str:
            return None
        order_id = order_id.strip()
        account_id = account_id.strip()
        side = _SIDES.get(get("side"))
        order_type = _ORDER_TYPES.get(get("type"))
        raw_time_in_force = get("timeInForce")
        time_in_force = GTC if raw_time_in_force is None else _TIMES_IN_FORCE.get(raw_time_in_force)
        raw_quantity = get("quantity")
        lots = None if type(raw_quantity) is bool else context.lots.get(raw_quantity)
        raw_price = get("price")
        if order_type == LIMIT:
            ticks = context.ticks.get(raw_price) if type(raw_price) is str else None
            if type(ticks) is not int:
                return None
        elif raw_price is not None:
            return None
        else:
            ticks = None
        if (
            type(lots) is not int
            or side is None
            or order_type is None
            or time_in_force is None
            or not 0 < len(order_id) <= 64
            or not 0 < len(account_id) <= 64
        ):
            return None
        command = NewOrder(
            context.symbol,
            order_id,
            account_id,
            side,
            order_type,
            time_in_force,
            lots,
            ticks,
            self._time(get("eventTime")),
        )
        return context.engine, command

    def _new(self, data: dict[str, Any]) -> tuple[MatchingEngine, Command]:
        _check_keys(data, _NEW_KEYS)
        context = self._symbol(data.get("symbol"))
        order_id = _identifier("orderId", data.get("orderId"))
        account_id = _identifier("accountId", data.get("accountId"))
        side = _choice("side", data.get("side"), _SIDES)
        raw_type = data.get("type")
        if raw_type is None:
            raw_type = data.get("orderType")
        order_type = _choice("type", raw_type, _ORDER_TYPES)
        raw_tif = data.get("timeInForce")
        time_in_force = GTC if raw_tif is None else _choice("timeInForce", raw_tif, _TIMES_IN_FORCE)
        lots = context.quantity_lots(data.get("quantity"))
        raw_price = data.get("price")
        if order_type == LIMIT:
            if raw_price is None:
                raise BadLineError("price: a LIMIT order needs a price")
            ticks: int | _Misfit | None = context.price_ticks(raw_price)
        elif raw_price is not None:
            raise BadLineError("price: a MARKET order takes no price (send null or leave it out)")
        else:
            ticks = None
        event_time = self._time(data.get("eventTime"))
        if type(ticks) is _Misfit or type(lots) is _Misfit:
            misfit = ticks if type(ticks) is _Misfit else lots
            reject = Reject(
                context.symbol,
                order_id,
                account_id,
                PLACE_ORDER,
                misfit.reason,  # type: ignore[union-attr]
                misfit.detail,  # type: ignore[union-attr]
                event_time,
            )
            return context.engine, reject
        command = NewOrder(
            context.symbol,
            order_id,
            account_id,
            side,
            order_type,
            time_in_force,
            lots,  # type: ignore[arg-type]
            ticks,  # type: ignore[arg-type]
            event_time,
        )
        return context.engine, command

    def _amend(self, data: dict[str, Any]) -> tuple[MatchingEngine, Command]:
        _check_keys(data, _AMEND_KEYS)
        context = self._symbol(data.get("symbol"))
        order_id = _identifier("orderId", data.get("orderId"))
        raw_quantity, raw_price = data.get("quantity"), data.get("price")
        if raw_quantity is None and raw_price is None:
            raise BadLineError("quantity: an amend needs a new quantity, a new price, or both")
        lots = None if raw_quantity is None else context.quantity_lots(raw_quantity)
        ticks = None if raw_price is None else context.price_ticks(raw_price)
        event_time = self._time(data.get("eventTime"))
        misfit = ticks if type(ticks) is _Misfit else lots if type(lots) is _Misfit else None
        if misfit is not None:
            account = data.get("accountId")
            account_id = None if account is None else _identifier("accountId", account)
            reject = Reject(
                context.symbol,
                order_id,
                account_id,
                AMEND_ORDER,
                misfit.reason,  # type: ignore[union-attr]
                misfit.detail,  # type: ignore[union-attr]
                event_time,
            )
            return context.engine, reject
        command = Amend(context.symbol, order_id, lots, ticks, event_time)  # type: ignore[arg-type]
        return context.engine, command

    def _symbol(self, raw: Any) -> _Symbol:
        context = self.symbols.get(raw) if type(raw) is str else None
        if context is None:
            if type(raw) is not str:
                raise BadLineError(
                    "symbol: required string" if raw is None else "symbol: expected a string"
                )
            symbol = raw.strip().upper()
            if not is_symbol(symbol):
                raise BadLineError(
                    f"symbol: {raw!r} is not a symbol (1-32 letters, digits, '.', '-')"
                )
            context = self.symbols[raw] = _Symbol(self.exchange.engine(symbol))
        return context

    def _time(self, raw: Any) -> str:
        if raw is None:
            return EPOCH_TIME
        if type(raw) is not str:
            raise BadLineError(
                "eventTime: expected an ISO 8601 string such as '2026-01-02T13:00:00Z'"
            )
        cached = self.times.get(raw)
        if cached is not None:
            return cached
        if len(self.times) >= 4096:
            self.times.clear()
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise BadLineError(f"eventTime: {raw!r} is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise BadLineError(
                f"eventTime: {raw!r} has no time zone; send UTC, e.g. '...T13:00:00Z'"
            )
        # Already canonical (UTC, microseconds, Z) text is its own normal form: skip strftime.
        if (
            len(raw) == 27
            and raw[26] == "Z"
            and raw[4] + raw[7] + raw[10] + raw[13] + raw[16] + raw[19] == "--T::."
        ):
            canonical = raw
        else:
            canonical = format_event_time(parsed.astimezone(UTC))
        self.times[raw] = canonical
        return canonical


def _check_keys(data: dict[str, Any], allowed: frozenset[str]) -> None:
    if not data.keys() <= allowed:
        unknown = ", ".join(sorted(set(data) - allowed))
        raise BadLineError(f"unknown field(s) {unknown} for op {data.get('op')!r}")


def replay(
    lines: Iterable[str],
    out: TextIO,
    err: TextIO,
    rules: Mapping[str, SymbolRules] | None = None,
) -> ReplayStats:
    """Replay command lines through a fresh exchange; events to ``out``, bad lines to ``err``."""
    exchange = Exchange(rules)
    decode = TapeDecoder(exchange).decode
    stats = ReplayStats()
    output: list[str] = []
    encoders = JSON_ENCODERS
    line_number = 0
    for line_number, line in enumerate(lines, 1):
        try:
            decoded = decode(line)
        except BadLineError as exc:
            stats.bad_lines += 1
            err.write(f"line {line_number}: {exc}\n")
            continue
        if decoded is None:
            continue
        engine, command = decoded
        if engine is None:
            events = exchange.close_session(command.event_time)  # type: ignore[union-attr]
        else:
            events = engine.process(command)
        stats.commands += 1
        if events:
            stats.events += len(events)
            output += [encoders[event[0]](event) for event in events]
            if len(output) >= _FLUSH_EVERY:
                output.append("")
                out.write("\n".join(output))
                output.clear()
    if output:
        output.append("")
        out.write("\n".join(output))
    out.flush()
    stats.lines = line_number
    stats.trades = sum(engine.trade_count for engine in exchange.engines.values())
    return stats


def load_rules(path: str) -> dict[str, SymbolRules]:
    """Read a ``--rules`` JSON file; raises ConfigError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle, parse_float=Decimal)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None
    try:
        return rules_from_wire(data)
    except ConfigError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brokerflow match",
        description=(
            "Replay an order-command JSONL tape through the matching engine; "
            "events go to stdout as JSONL, bad lines to stderr."
        ),
    )
    parser.add_argument("tape", nargs="?", default="-", help="command JSONL file, or - for stdin")
    parser.add_argument(
        "--rules", metavar="FILE", help="JSON object: symbol -> {tickSize, lotSize, ...}"
    )
    parser.add_argument("--summary", action="store_true", help="print counts to stderr at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``brokerflow match``; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return exc.code if isinstance(exc.code, int) else 2
    from brokerflow.exchange.rules import exchange_rules  # the CLI's edge: settings, files
    from brokerflow.settings import Settings

    try:
        rules = exchange_rules(Settings(), args.rules)
    except ConfigError as exc:
        print(f"brokerflow match: {exc}", file=sys.stderr)
        return 2
    try:
        if args.tape == "-":
            stats = replay(sys.stdin, sys.stdout, sys.stderr, rules)
        else:
            with open(args.tape, encoding="utf-8") as tape:
                stats = replay(tape, sys.stdout, sys.stderr, rules)
    except BrokenPipeError:
        # The reader stopped listening (`| head`): not an input problem. Point stdout at
        # /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        print(f"brokerflow match: cannot read {args.tape}: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        print(
            f"brokerflow match: {stats.lines} lines, {stats.commands} commands, "
            f"{stats.bad_lines} bad lines, {stats.events} events, {stats.trades} trades",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
