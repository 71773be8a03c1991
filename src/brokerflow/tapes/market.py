"""Make the bundled sample tape: 30 minutes of synthetic Binance and Brapi traffic.

    python -m brokerflow.tapes.market         # rewrites src/brokerflow/data/sample_tape.jsonl.gz
    python -m brokerflow.tapes.market --seed 7 --minutes 5 --out /tmp/small.jsonl.gz

Synthetic but shaped like the real thing, in the vendors' exact wire formats: Binance.US combined
stream frames (``trade`` with the ``b``/``a`` order ids, ``bookTicker``) for BTCUSDT, ETHUSDT and
SOLUSDT, and Brapi ``/api/quote`` bodies for PETR4, VALE3, ITUB4 and BBDC4 polled once a minute,
one ticker per request (the free plan's limit). Prices random-walk in whole ticks, sizes are
log-uniform in whole lots, every trade prints at the best bid or ask of the book ticker before it
and depletes it, and frames on one connection arrive in order. A few frames are broken on purpose
so dead-lettering shows (see :data:`MALFORMED`), and one ``serverShutdown`` forces a reconnect.

Deterministic from the seed, and only integer arithmetic and ``random.random``-based draws are
used (no ``math.log`` through libm), so every platform writes the same bytes. The gzip header
carries no file name and no time stamp for the same reason.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokerflow.connectors._frames import Frame
from brokerflow.connectors.tape import encode_tape_line

__all__ = ["DEFAULT_MINUTES", "DEFAULT_SEED", "MALFORMED", "generate_frames", "write_tape"]

DEFAULT_SEED = 20260423
DEFAULT_MINUTES = 30
#: 10:30 in Sao Paulo on a Thursday: B3 is open, and crypto never closes.
START = datetime(2026, 4, 23, 13, 30, tzinfo=UTC)
DEFAULT_OUT = Path(__file__).parent / "data" / "sample_tape.jsonl.gz"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The frames broken on purpose: (minute, what, the dead-letter reason it must produce).
MALFORMED: tuple[tuple[int, str, str], ...] = (
    (4, "BTCUSDT trade frame cut in half", "NOT_JSON"),
    (9, "ETHUSDT trade with a negative quantity (a string, no float)", "INVALID_FIELD"),
    (12, "BTCUSDT bookTicker with bid above ask", "CROSSED_QUOTE"),
    (15, "SOLUSDT trade with the price as a JSON number", "INVALID_FIELD"),
    (18, "BTCUSDT aggTrade frame, a stream we never subscribed to", "UNKNOWN_EVENT"),
    (21, "ITUB4 body that is a Brapi error", "VENDOR_ERROR"),
    (22, "ETHUSDT bookTicker frame cut short", "NOT_JSON"),
    (24, "BBDC4 quote with a null regularMarketPrice", "INVALID_FIELD"),
)
#: Binance announces maintenance at this minute; the connection is back after 1.2 s.
SERVER_SHUTDOWN_MINUTE = 25


# --- Binance ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CryptoSpec:
    symbol: str
    price: Decimal
    tick: Decimal
    lot: Decimal
    #: Mean milliseconds between book events for this symbol.
    mean_gap_ms: int
    #: A price move is a uniform whole number of ticks in [-max_step, max_step].
    max_step: int
    #: Trade sizes are log-uniform in lots: a decade 10**e with these weights (e = 0, 1, 2...).
    trade_decades: tuple[int, ...]
    book_decades: tuple[int, ...]
    spreads: tuple[tuple[int, int], ...] = ((1, 80), (2, 12), (3, 6), (5, 2))


CRYPTO = (
    _CryptoSpec(
        "BTCUSDT", Decimal("94112.01"), Decimal("0.01"), Decimal("0.00001"), 120, 250,
        (5, 10, 40, 35, 10), (0, 0, 5, 40, 45, 10),
    ),
    _CryptoSpec(
        "ETHUSDT", Decimal("3204.55"), Decimal("0.01"), Decimal("0.0001"), 180, 14,
        (0, 10, 40, 35, 15), (0, 0, 5, 40, 45, 10),
    ),
    _CryptoSpec(
        "SOLUSDT", Decimal("151.37"), Decimal("0.01"), Decimal("0.001"), 240, 1,
        (0, 15, 40, 35, 10), (0, 0, 5, 40, 45, 10),
    ),
)  # fmt: skip


@dataclass
class _Book:
    spec: _CryptoSpec
    bid: int  # in ticks
    spread: int  # in ticks
    bid_lots: int
    ask_lots: int
    update_id: int
    trade_id: int
    order_id: int

    @property
    def ask(self) -> int:
        return self.bid + self.spread


@dataclass(order=True)
class _Event:
    """One frame before its receive time is known."""

    venue_ms: int
    sequence: int
    vendor: str = field(compare=False)
    raw: str = field(compare=False)
    #: For picking the frames to break: (symbol, kind).
    tag: tuple[str, str] = field(compare=False)


def _lots(rng: random.Random, decades: Sequence[int]) -> int:
    exponent = rng.choices(range(len(decades)), weights=decades)[0]
    return rng.randrange(10**exponent, 10 ** (exponent + 1))


def _fixed8(units: int, step: Decimal) -> str:
    return format(units * step, ".8f")


def _binance_frame(stream: str, data: dict[str, Any]) -> str:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":"))


def _book_ticker(book: _Book) -> dict[str, Any]:
    spec = book.spec
    return {
        "u": book.update_id,
        "s": spec.symbol,
        "b": _fixed8(book.bid, spec.tick),
        "B": _fixed8(book.bid_lots, spec.lot),
        "a": _fixed8(book.ask, spec.tick),
        "A": _fixed8(book.ask_lots, spec.lot),
    }


def _crypto_events(
    rng: random.Random, spec: _CryptoSpec, start_ms: int, end_ms: int
) -> list[_Event]:
    book = _Book(
        spec,
        bid=int(spec.price / spec.tick),
        spread=1,
        bid_lots=_lots(rng, spec.book_decades),
        ask_lots=_lots(rng, spec.book_decades),
        update_id=rng.randrange(10**9, 5 * 10**9),
        trade_id=rng.randrange(10**8, 9 * 10**8),
        order_id=rng.randrange(10**9, 9 * 10**9),
    )
    stream = spec.symbol.lower()
    spread_sizes, spread_weights = zip(*spec.spreads, strict=True)
    events: list[_Event] = []
    now = start_ms

    def emit_book(at_ms: int) -> None:
        book.update_id += rng.randrange(1, 40)  # we see the top of book, not every update
        raw = _binance_frame(f"{stream}@bookTicker", _book_ticker(book))
        events.append(_Event(at_ms, len(events), "binance", raw, (spec.symbol, "bookTicker")))

    emit_book(now)
    while True:
        # Mostly spread-out events, sometimes a burst a few milliseconds apart.
        now += (
            rng.randrange(0, 6) if rng.random() < 0.15 else rng.randrange(1, 2 * spec.mean_gap_ms)
        )
        if now >= end_ms:
            return events
        if rng.random() < 0.6:  # the book moves or resizes
            if rng.random() < 0.5:
                spread = rng.choices(spread_sizes, weights=spread_weights)[0]
                # Keep the bid or the ask (either, evenly) so a depleted level's shift, down
                # for a bid and up for an ask, does not bias the walk.
                anchor = book.bid if rng.random() < 0.5 else book.ask - spread
                book.bid = anchor + rng.randint(-spec.max_step, spec.max_step)
                book.spread = spread
                book.bid_lots = _lots(rng, spec.book_decades)
                book.ask_lots = _lots(rng, spec.book_decades)
            elif rng.random() < 0.5:
                book.bid_lots = _lots(rng, spec.book_decades)
            else:
                book.ask_lots = _lots(rng, spec.book_decades)
            emit_book(now)
            continue
        # A trade at the touch: a buyer lifts the ask or a seller hits the bid.
        buyer_is_maker = rng.random() < 0.5
        price = book.bid if buyer_is_maker else book.ask
        resting = book.bid_lots if buyer_is_maker else book.ask_lots
        lots = min(_lots(rng, spec.trade_decades), resting)
        book.trade_id += 1
        book.order_id += rng.randrange(1, 500)
        resting_order, taker_order = book.order_id - rng.randrange(1, 10_000), book.order_id
        buyer, seller = (
            (resting_order, taker_order) if buyer_is_maker else (taker_order, resting_order)
        )
        event_ms = now + rng.randrange(0, 3)
        trade = {
            "e": "trade",
            "E": event_ms,
            "s": spec.symbol,
            "t": book.trade_id,
            "p": _fixed8(price, spec.tick),
            "q": _fixed8(lots, spec.lot),
            "b": buyer,
            "a": seller,
            "T": now,
            "m": buyer_is_maker,
            "M": True,
        }
        raw = _binance_frame(f"{stream}@trade", trade)
        events.append(_Event(event_ms, len(events), "binance", raw, (spec.symbol, "trade")))
        # The trade takes liquidity: the level shrinks, or is gone and the next one shows.
        if lots == resting:
            if buyer_is_maker:
                book.bid -= 1
                book.spread += 1
                book.bid_lots = _lots(rng, spec.book_decades)
            else:
                book.spread += 1
                book.ask_lots = _lots(rng, spec.book_decades)
            emit_book(event_ms + 1)
        else:
            if buyer_is_maker:
                book.bid_lots -= lots
            else:
                book.ask_lots -= lots
            if rng.random() < 0.5:
                emit_book(event_ms + 1)
        now = event_ms + 1  # what follows the trade happens after it


# --- Brapi --------------------------------------------------------------------------------------
@dataclass
class _Listing:
    symbol: str
    short_name: str
    long_name: str
    previous_close: int  # centavos
    day_open: int
    price: int
    day_high: int
    day_low: int
    volume: int
    year_low: int
    year_high: int


def _listings() -> list[_Listing]:
    return [
        _Listing("PETR4", "PETROBRAS   PN      N2", "Petróleo Brasileiro S.A. - Petrobras",
                 3740, 3752, 3785, 3800, 3720, 18_345_600, 3012, 4244),
        _Listing("VALE3", "VALE        ON      NM", "Vale S.A.",
                 6105, 6120, 6148, 6177, 6092, 9_876_500, 5230, 7245),
        _Listing("ITUB4", "ITAUUNIBANCOPN      N1", "Itaú Unibanco Holding S.A.",
                 3421, 3430, 3452, 3460, 3418, 12_034_400, 2788, 3720),
        _Listing("BBDC4", "BRADESCO    PN      N1", "Banco Bradesco S.A.",
                 1388, 1390, 1397, 1402, 1385, 21_500_300, 1105, 1604),
    ]  # fmt: skip


def _number(centavos: int) -> Decimal:
    # Brapi is a JavaScript service: 38.00 goes out as 38, 37.80 as 37.8.
    return (Decimal(centavos) / 100).normalize()


def _js_json(value: Any) -> str:
    """JSON with Decimals written as plain numbers, compact, UTF-8 text like Brapi's."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_js_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_js_json(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


def _iso_millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _quote_entry(listing: _Listing, market_time: datetime) -> dict[str, Any]:
    change = listing.price - listing.previous_close
    percent = (Decimal(change) * 100 / listing.previous_close).quantize(Decimal("0.0001"))
    return {
        "currency": "BRL",
        "shortName": listing.short_name,
        "longName": listing.long_name,
        "regularMarketChange": _number(change),
        "regularMarketChangePercent": percent.normalize(),
        "regularMarketTime": _iso_millis(market_time),
        "regularMarketPrice": _number(listing.price),
        "regularMarketDayHigh": _number(listing.day_high),
        "regularMarketDayRange": f"{_number(listing.day_low)} - {_number(listing.day_high)}",
        "regularMarketDayLow": _number(listing.day_low),
        "regularMarketVolume": listing.volume,
        "regularMarketPreviousClose": _number(listing.previous_close),
        "regularMarketOpen": _number(listing.day_open),
        "fiftyTwoWeekRange": f"{_number(listing.year_low)} - {_number(listing.year_high)}",
        "fiftyTwoWeekLow": _number(listing.year_low),
        "fiftyTwoWeekHigh": _number(listing.year_high),
        "symbol": listing.symbol,
        "logourl": f"https://icons.brapi.dev/icons/{listing.symbol}.svg",
    }


def _brapi_frames(rng: random.Random, start: datetime, minutes: int) -> list[Frame]:
    frames: list[Frame] = []
    listings = _listings()
    for cycle in range(minutes):
        sent = start + timedelta(seconds=60 * cycle + 2, milliseconds=rng.randrange(0, 300))
        for listing in listings:
            listing.price += rng.randint(-3, 3)
            listing.day_high = max(listing.day_high, listing.price)
            listing.day_low = min(listing.day_low, listing.price)
            listing.volume += 100 * rng.randrange(50, 4000)
            took = rng.randrange(80, 400)
            received = sent + timedelta(milliseconds=took + rng.randrange(20, 120))
            # The free plan's quotes are delayed: market time trails the request by 15 minutes.
            market_time = (sent - timedelta(minutes=15)).replace(microsecond=0)
            entry = _quote_entry(listing, market_time)
            if (cycle, listing.symbol) == (24, "BBDC4"):
                entry["regularMarketPrice"] = None
            body = {"results": [entry], "requestedAt": _iso_millis(sent), "took": took}
            raw = _js_json(body)
            if (cycle, listing.symbol) == (21, "ITUB4"):
                raw = _js_json(
                    {"error": True, "message": "Erro ao buscar a cotação de ITUB4, tente novamente"}
                )
            frames.append(Frame("brapi", raw, received))
            sent = received + timedelta(milliseconds=rng.randrange(5, 40))
    return frames


# --- putting it together ------------------------------------------------------------------------
def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _first(events: list[_Event], symbol: str, kind: str, minute: int, start_ms: int) -> int:
    at_ms = start_ms + minute * 60_000
    return next(
        index
        for index, event in enumerate(events)
        if event.tag == (symbol, kind) and event.venue_ms >= at_ms
    )


def _break_binance(events: list[_Event], start_ms: int) -> None:
    def replace(index: int, raw: str) -> None:
        old = events[index]
        events[index] = _Event(old.venue_ms, old.sequence, old.vendor, raw, old.tag)

    cut = _first(events, "BTCUSDT", "trade", 4, start_ms)
    replace(cut, events[cut].raw[: len(events[cut].raw) // 2])

    negative = _first(events, "ETHUSDT", "trade", 9, start_ms)
    replace(negative, events[negative].raw.replace('"q":"', '"q":"-', 1))

    crossed = _first(events, "BTCUSDT", "bookTicker", 12, start_ms)
    data = json.loads(events[crossed].raw)["data"]
    data["b"], data["a"] = data["a"], data["b"]
    replace(crossed, _binance_frame("btcusdt@bookTicker", data))

    numeric = _first(events, "SOLUSDT", "trade", 15, start_ms)
    data = json.loads(events[numeric].raw)["data"]
    price = data["p"]
    replace(
        numeric, events[numeric].raw.replace(f'"p":"{price}"', f'"p":{Decimal(price).normalize()}')
    )

    short = _first(events, "ETHUSDT", "bookTicker", 22, start_ms)
    replace(short, events[short].raw[:-7])

    trade = json.loads(events[_first(events, "BTCUSDT", "trade", 18, start_ms)].raw)["data"]
    aggregate = {
        "e": "aggTrade",
        "E": trade["E"],
        "s": "BTCUSDT",
        "a": 2_412_093_117,
        "p": trade["p"],
        "q": trade["q"],
        "f": trade["t"],
        "l": trade["t"],
        "T": trade["T"],
        "m": trade["m"],
        "M": True,
    }
    raw = _binance_frame("btcusdt@aggTrade", aggregate)
    events.append(_Event(trade["E"], -1, "binance", raw, ("BTCUSDT", "aggTrade")))


def generate_frames(seed: int = DEFAULT_SEED, minutes: int = DEFAULT_MINUTES) -> list[Frame]:
    """Every frame of the tape, in receive order."""
    if minutes < SERVER_SHUTDOWN_MINUTE + 1:
        raise ValueError(f"need at least {SERVER_SHUTDOWN_MINUTE + 1} minutes, got {minutes}")
    rng = random.Random(seed)
    start_ms = _millis(START)
    end_ms = start_ms + minutes * 60_000
    events: list[_Event] = []
    for spec in CRYPTO:
        events += _crypto_events(rng, spec, start_ms, end_ms)
    # One connection carries every stream: sort by venue time, then one receive order.
    events.sort()
    _break_binance(events, start_ms)
    events.sort()

    shutdown_ms = start_ms + SERVER_SHUTDOWN_MINUTE * 60_000
    reconnected_ms = shutdown_ms + 1_200
    frames: list[Frame] = []
    last_us = 0
    shutdown_sent = False
    for event in events:
        if shutdown_ms <= event.venue_ms < reconnected_ms:
            if not shutdown_sent:
                notice = json.dumps(
                    {"e": "serverShutdown", "E": shutdown_ms}, separators=(",", ":")
                )
                last_us = max(shutdown_ms * 1000 + rng.randrange(18_000, 60_000), last_us + 1)
                frames.append(Frame("binance", notice, _EPOCH + timedelta(microseconds=last_us)))
                shutdown_sent = True
            continue  # reconnecting: these frames never reached us
        # Network latency, with the occasional hiccup; TCP keeps the connection's order.
        latency_us = rng.randrange(18_000, 95_000)
        if rng.random() < 0.01:
            latency_us += rng.randrange(100_000, 400_000)
        last_us = max(event.venue_ms * 1000 + latency_us, last_us + rng.randrange(5, 60))
        frames.append(Frame("binance", event.raw, _EPOCH + timedelta(microseconds=last_us)))

    frames += _brapi_frames(rng, START, minutes)
    # Stable: frames received in the same microsecond keep their connection's order.
    frames.sort(key=lambda frame: frame.receive_time)
    return frames


def write_tape(path: Path, frames: Sequence[Frame]) -> None:
    """A byte-for-byte reproducible ``.jsonl.gz`` (no name, no time stamp in the gzip header)."""
    with (
        path.open("wb") as file,
        gzip.GzipFile(filename="", mode="wb", fileobj=file, compresslevel=9, mtime=0) as compressed,
    ):
        for frame in frames:
            compressed.write(encode_tape_line(frame).encode("ascii"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--minutes", type=int, default=DEFAULT_MINUTES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    frames = generate_frames(args.seed, args.minutes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_tape(args.out, frames)
    print(f"wrote {len(frames)} frames to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
