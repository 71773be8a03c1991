"""A deterministic order-command tape generator: benchmarks, tests and the demo share it.

The lines are ``brokerflow match`` tape lines (``{"op":"new",...}``) over several symbols with
their own rules (see :func:`rules_document`): passive limits near the touch, marketable limits,
a few MARKET/IOC/FOK/DAY orders, cancels and amends aimed at orders that really rest, and
reference prices; about half the commands trade.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokerflow.matching.exchange import Exchange
from brokerflow.matching.replay import TapeDecoder
from brokerflow.matching.rules import rules_from_wire

__all__ = ["SEED", "SYMBOLS", "generate_tape", "rules_document"]

SEED = 20261122
#: (symbol, mid price, tick, lot, band %, self-trade prevention)
SYMBOLS: Sequence[tuple[str, str, str, int, str | None, str]] = (
    ("PETR4", "38.50", "0.01", 100, "10", "OFF"),
    ("VALE3", "61.20", "0.01", 100, "10", "CANCEL_NEWEST"),
    ("ITUB4", "33.10", "0.01", 100, None, "OFF"),
    ("BBDC4", "14.35", "0.01", 100, "15", "CANCEL_OLDEST"),
    ("ABEV3", "12.80", "0.01", 100, None, "OFF"),
    ("WEGE3", "41.05", "0.01", 100, "10", "OFF"),
    ("BTCUSDT", "67000.00", "0.10", 1, None, "OFF"),
    ("MGLU3", "9.75", "0.01", 100, "20", "OFF"),
)
ACCOUNTS = 400


def rules_document() -> dict[str, dict[str, Any]]:
    """The ``--rules`` file of the tape's symbols."""
    return {
        symbol: {
            "tickSize": tick,
            "lotSize": str(lot),
            "priceBandPct": band,
            "selfTradePrevention": stp,
        }
        for symbol, _, tick, lot, band, stp in SYMBOLS
    }


class _LivePool:
    """Ids of orders resting in the shadow exchange, with O(1) random pick and removal."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}

    def apply(self, changes: Sequence[tuple[str, Any]]) -> None:
        for order_id, order in changes:
            if order is not None and order_id not in self.index:
                self.index[order_id] = len(self.ids)
                self.ids.append(order_id)
            elif order is None and order_id in self.index:
                position = self.index.pop(order_id)
                last = self.ids.pop()
                if position < len(self.ids):
                    self.ids[position] = last
                    self.index[last] = position

    def pick(self, rng: random.Random) -> str | None:
        return self.ids[rng.randrange(len(self.ids))] if self.ids else None


def generate_tape(count: int, seed: int = SEED, hot_share: float | None = None) -> list[str]:
    """A deterministic JSONL command tape of ``count`` lines.

    A shadow exchange runs alongside so that cancels and amends aim at orders that really rest
    (as a broker's would), bar a few that arrive too late. ``hot_share``: that fraction of the
    commands goes to the first symbol, the rest spread over all (a hot symbol at market open).
    """
    rng = random.Random(seed)
    rules = rules_from_wire(rules_document())
    shadow = Exchange(rules)
    decoder = TapeDecoder(shadow)
    mids = {symbol: int(Decimal(mid) / Decimal(tick)) for symbol, mid, tick, *_ in SYMBOLS}
    ticks = {symbol: Decimal(tick) for symbol, _, tick, *_ in SYMBOLS}
    lots = {symbol: lot for symbol, _, _, lot, *_ in SYMBOLS}
    live = {symbol: _LivePool() for symbol in mids}
    symbols = list(mids)
    start = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
    lines: list[str] = []
    for number in range(count):
        if hot_share is not None and rng.random() < hot_share:
            symbol = symbols[0]
        else:
            symbol = rng.choice(symbols)
        tick, lot = ticks[symbol], lots[symbol]
        top = shadow.engine(symbol).best_bid_ask()
        bid = None if top.bid is None else int(top.bid.price / tick)
        ask = None if top.ask is None else int(top.ask.price / tick)
        if bid is not None and ask is not None:
            mids[symbol] = (bid + ask) // 2
        elif rng.random() < 0.05:
            mids[symbol] += rng.choice((-1, 1))
        mid = mids[symbol]
        side = rng.choice(("BUY", "SELL"))
        sign = 1 if side == "BUY" else -1
        # Where a passive order joins (just inside its own side) and where a taker aims.
        touch = (ask if ask is not None else mid + 1) if side == "BUY" else bid
        if touch is None:
            touch = mid - 1
        line: dict[str, Any] = {
            "op": "new",
            "orderId": f"o{number}",
            "accountId": f"acc{rng.randrange(ACCOUNTS)}",
            "symbol": symbol,
            "side": side,
            "type": "LIMIT",
            "quantity": lot * rng.randint(1, 10),
        }
        roll = rng.random()
        target = live[symbol].pick(rng)
        if roll < 0.36:  # passive limit at or near the touch: rests
            line["price"] = str((touch - sign * (1 + int(rng.expovariate(0.7)))) * tick)
        elif roll < 0.77:  # marketable limit: crosses the touch by up to two ticks
            line["quantity"] = lot * rng.randint(1, 6)
            line["price"] = str((touch + sign * rng.randint(0, 2)) * tick)
        elif roll < 0.80:
            line["type"] = "MARKET"
            line["quantity"] = lot * rng.randint(1, 4)
            line["timeInForce"] = rng.choice(("IOC", "GTC"))
        elif roll < 0.82:
            line["timeInForce"] = "IOC"
            line["price"] = str((touch + sign * rng.randint(0, 1)) * tick)
        elif roll < 0.83:
            line["timeInForce"] = "FOK"
            line["price"] = str((touch + sign * rng.randint(0, 2)) * tick)
        elif roll < 0.85:  # DAY order near the touch
            line["timeInForce"] = "DAY"
            line["price"] = str((touch - sign * rng.randint(1, 4)) * tick)
        elif roll < 0.95 and target is not None:
            line = {"op": "cancel", "orderId": target, "symbol": symbol}
        elif roll < 0.955:  # too late: the order is gone (or never existed)
            line = {"op": "cancel", "orderId": f"o{rng.randrange(number + 1)}", "symbol": symbol}
        elif roll < 0.985 and target is not None:
            line = {"op": "amend", "orderId": target, "symbol": symbol}
            if rng.random() < 0.6:
                line["quantity"] = lot * rng.randint(1, 5)
            else:
                line["price"] = str((mid + rng.choice((-2, -1, 1, 2))) * tick)
        elif roll < 0.99:
            line = {"op": "reference", "symbol": symbol, "price": str(mid * tick)}
        else:
            line["price"] = str((touch - sign) * tick)
        line["eventTime"] = (start + timedelta(microseconds=200 * number)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        text = json.dumps(line, separators=(",", ":"))
        lines.append(text)
        decoded = decoder.decode(text)
        if decoded is not None and decoded[0] is not None:
            engine, command = decoded
            engine.process(command)
            live[symbol].apply(engine.changes)
    return lines
