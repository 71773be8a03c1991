"""The exchange's two command sources on the real broker: reference prices and session closes.

The exchange agent turns market-data trades and quotes into ``SetReferencePrice`` commands
(:mod:`brokerflow.agents.forward_reference_prices`) and ``close_sessions`` publishes
``CloseSession`` at the session close; the matching agent applies both from the command log.
Every test runs real workers (``faust -A brokerflow.app worker``) as subprocesses on topics with a
unique prefix, app id and data dir, and reads the outputs back with a ``read_committed`` consumer.
Expected events come from ``brokerflow match``'s replay of the equivalent tape (the same matching
code) and are also spelled out by hand. Worker helpers are shared with the other exchange tests
(``exchange_workers.py``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from brokerflow.exchange.io import TopicRecord, publish_commands, read_topic
from brokerflow.exchange.schedule import close_to_publish
from brokerflow.kafka_io import producer, publish
from brokerflow.schemas import CloseSession, Quote, SetReferencePrice, Trade, decode
from brokerflow.settings import Settings
from brokerflow.topics import catalog

from .exchange_workers import (
    IsolatedExchange,
    by_symbol,
    changelog_engines,
    isolated_exchange,
    kafka_settings,
    replayed_by_symbol,
    stop,
)

pytestmark = pytest.mark.integration

#: Worker start-up, rebalance and recovery on a busy 2-core machine: be generous.
WAIT_S = 180.0


@pytest.fixture(scope="module")
def settings() -> Settings:
    return kafka_settings()


@pytest.fixture
def exchange(settings: Settings, unique: str, tmp_path: Path) -> IsolatedExchange:
    return isolated_exchange(
        settings, unique, tmp_path, "xi", EXCHANGE_REFERENCE_MIN_INTERVAL_S="1.0"
    )


def stop_all(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            stop(process)


def poll(
    what: str, check: Callable[[], Any], exchange: IsolatedExchange, name: str, timeout_s: float
) -> Any:
    """``check()`` until it returns something truthy; on timeout fail with the worker's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    tail = "\n".join(exchange.log(name).splitlines()[-40:])
    raise AssertionError(f"{what} not seen within {timeout_s:.0f} s; {name}'s log ends:\n{tail}")


def committed(settings: Settings, topic: str, type_name: str | None = None) -> list[TopicRecord]:
    """The committed records of ``topic`` now (optionally of one message type)."""
    records = asyncio.run(read_topic(settings, topic, timeout_s=10))
    return [r for r in records if type_name is None or r.json().get("type") == type_name]


def resting_orders(exchange: IsolatedExchange) -> dict[str, list[tuple[str, str, int]]]:
    """(orderId, timeInForce, leaves in lots) of every order resting in the tables' changelogs:
    what a worker would rebuild."""
    resting: dict[str, list[tuple[str, str, int]]] = {}
    for symbol, engine in changelog_engines(exchange).items():
        records = [order.to_record() for order in engine.resting_orders()]
        resting[symbol] = sorted(
            (r["orderId"], str(r["timeInForce"]), r["leavesLots"]) for r in records
        )
    return resting


def order(
    order_id: str, symbol: str, side: str, tif: str, quantity: int, price: str, at: datetime
) -> dict[str, Any]:
    """A ``brokerflow match`` tape line for a LIMIT order."""
    return {
        "op": "new",
        "orderId": order_id,
        "accountId": f"acct-{order_id}",
        "symbol": symbol,
        "side": side,
        "type": "LIMIT",
        "timeInForce": tif,
        "quantity": quantity,
        "price": price,
        "eventTime": at.isoformat().replace("+00:00", "Z"),
    }


def wire_time(at: datetime) -> str:
    """A time as the exchange writes it in events (UTC, microseconds, ``Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- reference prices ------------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


def trade(symbol: str, trade_id: str, price: str, after_s: float) -> Trade:
    at = T0 + timedelta(seconds=after_s)
    return Trade(
        venue="B3",
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal(100),
        event_time=at,
        receive_time=at + timedelta(milliseconds=40),
    )


def test_market_trades_become_reference_prices_that_band_orders(
    exchange: IsolatedExchange,
) -> None:
    """Trades -> throttled ``SetReferencePrice`` commands (changed price, >= 1 s of trade event
    time apart, per symbol) -> PRICE_BAND rejections exactly at the band's edges."""
    settings = exchange.settings
    topics = catalog(settings)
    petr4 = [  # PETR4: band 10 %, tick 0.01
        trade("PETR4", "p1", "40.00", 0.0),  # first price: forwarded
        trade("PETR4", "p2", "40.50", 0.4),  # 0.4 s after the last forwarded: held
        trade("PETR4", "p3", "40.00", 1.5),  # back at the forwarded 40.00: the hold is dropped
        trade("PETR4", "p4", "41.00", 2.0),  # changed, 2 s later: forwarded
        trade("PETR4", "p5", "41.00", 2.5),  # unchanged (and too soon): dropped
        trade("PETR4", "p6", "41.00", 4.0),  # unchanged: dropped
        trade("PETR4", "p7", "42.00", 5.0),  # forwarded
        trade("PETR4", "p8", "45.00", 5.5),  # too soon: held, then forwarded by the timer
    ]
    vale3 = [  # VALE3: band 10 %; its own throttle, independent of PETR4's
        trade("VALE3", "v1", "61.20", 0.1),
        trade("VALE3", "v2", "62.00", 1.2),
    ]

    async def publish_trades() -> None:
        async with producer(settings, enable_idempotence=True, acks="all") as client:
            await publish(client, topics.market_trades.name, [("PETR4", t) for t in petr4[:4]])
            await publish(client, topics.market_trades.name, [("VALE3", vale3[0])])
            # Not a Trade: skipped (logged), the stream goes on.
            await client.send_and_wait(topics.market_trades.name, b"{not json", key=b"VALE3")
            await publish(client, topics.market_trades.name, [("VALE3", vale3[1])])
            await publish(client, topics.market_trades.name, [("PETR4", t) for t in petr4[4:]])

    asyncio.run(publish_trades())
    worker = exchange.start_worker("w1")
    try:
        poll(
            "6 SetReferencePrice commands",
            lambda: len(committed(settings, topics.order_commands.name)) >= 6,
            exchange,
            "w1",
            WAIT_S,
        )
        # The band now stands at PETR4 45.00 (40.50..49.50; around 42.00, the last price
        # forwarded at once, 40.49 and 49.50 would be the other way round) and VALE3 62.00
        # (55.80..68.20).
        orders = [
            order("p-low-out", "PETR4", "BUY", "GTC", 100, "40.49", T0 + timedelta(seconds=10)),
            order("p-low-in", "PETR4", "BUY", "GTC", 100, "40.50", T0 + timedelta(seconds=10)),
            order("p-high-out", "PETR4", "SELL", "GTC", 100, "49.51", T0 + timedelta(seconds=10)),
            order("p-high-in", "PETR4", "SELL", "GTC", 100, "49.50", T0 + timedelta(seconds=10)),
            order("v-out", "VALE3", "BUY", "DAY", 100, "55.79", T0 + timedelta(seconds=10)),
            order("v-in", "VALE3", "BUY", "DAY", 100, "55.80", T0 + timedelta(seconds=10)),
        ]
        asyncio.run(publish_commands(settings, orders))
        events = by_symbol(
            asyncio.run(
                read_topic(
                    settings,
                    topics.order_events.name,
                    min_count=len(orders),
                    timeout_s=WAIT_S,
                    settle_s=3.0,
                )
            )
        )
        commands = committed(settings, topics.order_commands.name)
    finally:
        stop_all(worker)
    assert worker.returncode == 0
    log = exchange.log("w1")
    assert log.count("not a Trade at") == 1, "the garbage record is skipped once, logged"

    references = [
        (r.key, decode(r.value)) for r in commands if r.json()["type"] == "SetReferencePrice"
    ]
    forwarded = [
        (key.decode(), (m.symbol, m.price, m.source, m.event_time))
        for key, m in references
        if key is not None and isinstance(m, SetReferencePrice)
    ]
    forwarded_by_symbol: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for key, fields in forwarded:
        forwarded_by_symbol[key].append(fields)
    at = [T0 + timedelta(seconds=s) for s in (0, 2, 5, 5.5, 0.1, 1.2)]
    assert dict(forwarded_by_symbol) == {
        "PETR4": [
            ("PETR4", Decimal("40.00"), "B3", at[0]),
            ("PETR4", Decimal("41.00"), "B3", at[1]),
            ("PETR4", Decimal("42.00"), "B3", at[2]),
            ("PETR4", Decimal("45.00"), "B3", at[3]),  # p8, held, with its own event time
        ],
        "VALE3": [
            ("VALE3", Decimal("61.20"), "B3", at[4]),
            ("VALE3", Decimal("62.00"), "B3", at[5]),
        ],
    }
    # Nothing else reached the command log but our orders: no dead letter, no stray command.
    assert len(commands) == len(forwarded) + len(orders)

    summary = {
        symbol: [(e["type"], e["orderId"], e["status"], e.get("reason")) for e in items]
        for symbol, items in events.items()
    }
    assert summary == {
        "PETR4": [
            ("OrderRejected", "p-low-out", "REJECTED", "PRICE_BAND"),
            ("OrderAccepted", "p-low-in", "OPEN", None),
            ("OrderRejected", "p-high-out", "REJECTED", "PRICE_BAND"),
            ("OrderAccepted", "p-high-in", "OPEN", None),
        ],
        "VALE3": [
            ("OrderRejected", "v-out", "REJECTED", "PRICE_BAND"),
            ("OrderAccepted", "v-in", "OPEN", None),
        ],
    }
    assert events["PETR4"][0]["detail"] == (
        "PlaceOrder: price 40.49 is more than 10% away from the reference price 45.00 "
        "(allowed 40.50 to 49.50)"
    )
    assert events["VALE3"][0]["detail"] == (
        "PlaceOrder: price 55.79 is more than 10% away from the reference price 62.00 "
        "(allowed 55.80 to 68.20)"
    )
    # Record for record what the replay of the forwarded prices and the orders gives.
    tape = [
        {
            "op": "reference",
            "symbol": symbol,
            "price": str(price),
            "eventTime": wire_time(event_time),
        }
        for symbol, price, _, event_time in (fields for _, fields in forwarded)
    ] + orders
    assert replayed_by_symbol(tape, exchange.rules_path) == ({}, events)


def forwarding_states(exchange: IsolatedExchange) -> dict[tuple[int, bytes], dict[str, Any]]:
    """The committed ``reference_forwarding`` table, latest value per (partition, key)."""
    app_id = exchange.env["EXCHANGE_APP_ID"]
    records = asyncio.run(
        read_topic(exchange.settings, f"{app_id}-reference_forwarding-changelog", timeout_s=10)
    )
    return {
        (r.partition, r.key): json.loads(r.value) for r in records if r.key is not None and r.value
    }


def test_a_restarted_worker_keeps_what_was_forwarded_and_what_was_held(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    """The forwarding state lives in a table committed with the forwarded commands: after a
    restart an unchanged price is not forwarded again, and a price held back by the interval
    when the first worker stopped is forwarded by the second."""
    exchange = isolated_exchange(
        settings, unique, tmp_path, "xr", EXCHANGE_REFERENCE_MIN_INTERVAL_S="8"
    )
    topics = catalog(exchange.settings)
    trades_topic = topics.market_trades.name

    def publish_trades(trades: Sequence[Trade]) -> None:
        async def run() -> None:
            async with producer(exchange.settings, enable_idempotence=True, acks="all") as client:
                await publish(client, trades_topic, [(t.symbol, t) for t in trades])

        asyncio.run(run())

    def forwarding(symbol: str) -> dict[str, Any]:
        """The symbol's committed forwarding state (one partition holds it)."""
        key = f"{trades_topic}|{symbol}".encode()
        found = [value for (_, k), value in forwarding_states(exchange).items() if k == key]
        return found[0] if found else {}

    def forwarded() -> list[tuple[str, Decimal, datetime]]:
        """Sorted: symbols in different partitions have no common order."""
        return sorted(
            (m.symbol, m.price, m.event_time)
            for m in (
                decode(r.value) for r in committed(exchange.settings, topics.order_commands.name)
            )
            if isinstance(m, SetReferencePrice)
        )

    publish_trades(
        [
            trade("PETR4", "p1", "40.00", 0.0),  # forwarded
            trade("VALE3", "v1", "61.20", 0.0),  # forwarded
            trade("PETR4", "p2", "40.50", 0.4),  # held: 8 s must pass first
        ]
    )
    first = exchange.start_worker("w1")
    try:
        poll(
            "PETR4's held 40.50 committed",
            lambda: forwarding("PETR4").get("heldPrice") == "40.50",
            exchange,
            "w1",
            WAIT_S,
        )
    finally:
        stop_all(first)
    assert first.returncode == 0
    assert forwarded() == [("PETR4", Decimal("40.00"), T0), ("VALE3", Decimal("61.20"), T0)]

    # Unchanged from what was forwarded, a minute of market time later: an in-memory throttle
    # would start empty after the restart and forward it again.
    publish_trades([trade("VALE3", "v2", "61.20", 60.0)])
    second = exchange.start_worker("w2")
    try:
        poll(
            "the held price forwarded by w2",
            lambda: len(forwarded()) >= 3,
            exchange,
            "w2",
            WAIT_S,
        )
        time.sleep(2.0)  # anything else w2 would forward lands meanwhile
        after_restart = forwarded()
    finally:
        stop_all(second)
    assert second.returncode == 0
    assert after_restart == [
        ("PETR4", Decimal("40.00"), T0),
        ("PETR4", Decimal("40.50"), T0 + timedelta(seconds=0.4)),
        ("VALE3", Decimal("61.20"), T0),
    ]
    assert "1 reference prices held" in exchange.log("w2"), "w2 restored the hold, w1 did not send"
    assert forwarding("PETR4")["heldPrice"] is None
    # Every trade was read: the next offsets committed per partition cover all four records.
    next_offsets = [
        value["nextOffset"]
        for (_, key), value in forwarding_states(exchange).items()
        if key.startswith(b"#")
    ]
    assert sum(next_offsets) == 4


def quote(symbol: str, price: str, after_s: float) -> Quote:
    at = T0 + timedelta(seconds=after_s)
    return Quote(
        venue="B3",
        symbol=symbol,
        currency="BRL",
        last_price=Decimal(price),
        event_time=at,
        receive_time=at + timedelta(milliseconds=300),
    )


def test_brapi_quotes_become_reference_prices_of_b3_stocks(exchange: IsolatedExchange) -> None:
    """B3 stocks' market price comes from Brapi quotes (Binance has no B3 trades): each changed
    ``lastPrice`` at least 1 s of quote time after the last one forwarded becomes the band's
    reference."""
    settings = exchange.settings
    topics = catalog(settings)
    quotes = [
        quote("PETR4", "38.00", 0.0),  # forwarded
        quote("PETR4", "38.00", 60.0),  # the poller's unchanged repeat: dropped
        quote("PETR4", "38.40", 60.5),  # changed, a minute later: forwarded
    ]

    async def publish_quotes() -> None:
        async with producer(settings, enable_idempotence=True, acks="all") as client:
            await publish(client, topics.market_quotes.name, [("PETR4", q) for q in quotes])
            await client.send_and_wait(topics.market_quotes.name, b"{not json", key=b"PETR4")

    asyncio.run(publish_quotes())
    worker = exchange.start_worker("w1")
    try:
        poll(
            "2 SetReferencePrice commands",
            lambda: len(committed(settings, topics.order_commands.name)) >= 2,
            exchange,
            "w1",
            WAIT_S,
        )
        at = T0 + timedelta(seconds=70)
        orders = [  # band 10 % around 38.40: 34.56 .. 42.24
            order("q-out", "PETR4", "SELL", "GTC", 100, "42.25", at),
            order("q-in", "PETR4", "SELL", "GTC", 100, "42.24", at),
        ]
        asyncio.run(publish_commands(settings, orders))
        events = by_symbol(
            asyncio.run(
                read_topic(
                    settings, topics.order_events.name, min_count=2, timeout_s=WAIT_S, settle_s=2
                )
            )
        )
        commands = committed(settings, topics.order_commands.name, "SetReferencePrice")
    finally:
        stop_all(worker)
    assert worker.returncode == 0
    assert exchange.log("w1").count("not a Quote at") == 1
    forwarded = [decode(record.value) for record in commands]
    assert [(m.symbol, m.price, m.source, m.event_time) for m in forwarded] == [
        ("PETR4", Decimal("38.00"), "B3", T0),
        ("PETR4", Decimal("38.40"), "B3", T0 + timedelta(seconds=60.5)),
    ]
    assert [(e["type"], e["orderId"], e.get("reason")) for e in events["PETR4"]] == [
        ("OrderRejected", "q-out", "PRICE_BAND"),
        ("OrderAccepted", "q-in", None),
    ]


# --- session close ---------------------------------------------------------------------------

SESSION_OPEN = clock_time(1, 0)
SESSION_CLOSE = clock_time(2, 0)


def closed_session_zone(now: datetime) -> tuple[str, date, datetime]:
    """A fixed-offset zone where it is now between 12:00 and 12:59, so with a 01:00-02:00 session
    a close has passed and the next open is hours away on any weekday (after today's close) or
    weekend day (after Friday's), at any hour; the session date then stays put for 11 hours.
    Returns the zone, the session date and its close instant."""
    offset = 12 - now.hour  # -11..12; Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    local_today = now.astimezone(ZoneInfo(zone)).date()
    session_date = local_today - timedelta(days=max(0, local_today.weekday() - 4))
    closes_at = datetime.combine(session_date, SESSION_CLOSE, tzinfo=ZoneInfo(zone))
    return zone, session_date, closes_at.astimezone(UTC)


@pytest.mark.parametrize(
    "now",
    [datetime(2026, 1, 4, hour, 30, tzinfo=UTC) for hour in range(24)]  # a Sunday
    + [datetime(2026, 1, 5, hour, 30, tzinfo=UTC) for hour in range(24)]  # a Monday
    + [datetime(2026, 1, 7, hour, 59, tzinfo=UTC) for hour in range(24)],  # a Wednesday
)
def test_closed_session_zone_always_has_a_close_due(now: datetime) -> None:
    """The zone chosen by the timer test makes a close due at any hour of any day."""
    zone, session_date, closes_at = closed_session_zone(now)
    assert close_to_publish(now, SESSION_OPEN, SESSION_CLOSE, zone) == (session_date, closes_at)
    assert session_date.weekday() < 5
    assert timedelta(hours=10) < now - closes_at < timedelta(days=3)


def test_session_timer_expires_day_orders_once_per_session_date(
    exchange: IsolatedExchange,
) -> None:
    """A worker's timer closes the session of EXCHANGE_SESSION_SYMBOLS only: resting DAY orders
    expire with their exact leaves, GTC orders and other symbols' DAY orders stay; a restarted
    worker publishes the same close again and the matching agent ignores it."""
    settings = exchange.settings
    topics = catalog(settings)
    zone, session_date, closes_at = closed_session_zone(datetime.now(UTC))
    assert close_to_publish(datetime.now(UTC), SESSION_OPEN, SESSION_CLOSE, zone) == (
        session_date,
        closes_at,
    )
    timer_env = {
        "EXCHANGE_SESSION_SYMBOLS": "PETR4",
        "EXCHANGE_SESSION_TIMEZONE": zone,
        "EXCHANGE_SESSION_CLOSE": SESSION_CLOSE.isoformat(),
        "EXCHANGE_SESSION_OPEN": SESSION_OPEN.isoformat(),
        "EXCHANGE_SESSION_TIMER_S": "1",
    }
    before = closes_at - timedelta(minutes=30)
    after = closes_at + timedelta(minutes=5)
    orders = [
        order("d1", "PETR4", "BUY", "DAY", 500, "38.00", before),
        order("g1", "PETR4", "BUY", "GTC", 200, "37.90", before),
        order("s1", "PETR4", "SELL", "GTC", 200, "38.00", before),  # fills 200 of d1
        order("d2", "PETR4", "SELL", "DAY", 100, "39.00", before),
        order("g2", "PETR4", "SELL", "GTC", 300, "39.50", before),
        order("v1", "VALE3", "BUY", "DAY", 100, "61.00", before),  # no session: stays
    ]
    late = order("d3", "PETR4", "BUY", "DAY", 100, "37.50", after)  # after the close
    asyncio.run(publish_commands(settings, orders))  # in the log before the timer's close
    first = second = None
    try:
        first = exchange.start_worker("w1", **timer_env)
        poll(
            "the DAY orders' expiry",
            lambda: len(committed(settings, topics.order_events.name, "OrderExpired")) >= 2,
            exchange,
            "w1",
            WAIT_S,
        )
        time.sleep(5)  # five more timer ticks: the same process must not publish again
        closes_first = committed(settings, topics.order_commands.name, "CloseSession")
        assert stop(first) == 0
        asyncio.run(publish_commands(settings, [late]))
        second = exchange.start_worker("w2", **timer_env)  # a restart: the same close again
        poll(
            "the repeated close being ignored",
            lambda: "already closed; close ignored" in exchange.log("w2"),
            exchange,
            "w2",
            WAIT_S,
        )
        events = by_symbol(
            asyncio.run(
                read_topic(
                    settings,
                    topics.order_events.name,
                    min_count=11,
                    timeout_s=WAIT_S,
                    settle_s=3.0,
                )
            )
        )
        trades = by_symbol(committed(settings, topics.trade_executions.name))
        closes_all = committed(settings, topics.order_commands.name, "CloseSession")
        assert stop(second) == 0
    finally:
        stop_all(first, second)

    expected_close = CloseSession(symbol="PETR4", session_date=session_date, event_time=closes_at)
    assert [(r.key, decode(r.value)) for r in closes_first] == [(b"PETR4", expected_close)]
    assert [(r.key, decode(r.value)) for r in closes_all] == [(b"PETR4", expected_close)] * 2
    assert f"{session_date.isoformat()} already closed; close ignored" in exchange.log("w2")

    summary = {
        symbol: [(e["type"], e["orderId"], e["filledQuantity"], e["leavesQuantity"]) for e in items]
        for symbol, items in events.items()
    }
    assert summary == {
        "PETR4": [
            ("OrderAccepted", "d1", "0", "500"),
            ("OrderAccepted", "g1", "0", "200"),
            ("OrderAccepted", "s1", "0", "200"),
            ("OrderPartiallyFilled", "d1", "200", "300"),  # trade PETR4-T1: 200 at 38.00
            ("OrderFilled", "s1", "200", "0"),
            ("OrderAccepted", "d2", "0", "100"),
            ("OrderAccepted", "g2", "0", "300"),
            ("OrderExpired", "d1", "200", "0"),  # the close: d1's last 300 ...
            ("OrderExpired", "d2", "0", "0"),  # ... and all of d2
            ("OrderAccepted", "d3", "0", "100"),  # placed after the close; the repeat spares it
        ],
        "VALE3": [("OrderAccepted", "v1", "0", "100")],
    }
    expired = [e for e in events["PETR4"] if e["type"] == "OrderExpired"]
    assert [(e["orderId"], e["expiredQuantity"], e["eventTime"]) for e in expired] == [
        ("d1", "300", wire_time(closes_at)),
        ("d2", "100", wire_time(closes_at)),
    ]
    # Record for record what the replay gives for the orders, one close, the late order.
    close_line = {"op": "close", "symbol": "PETR4", "eventTime": wire_time(closes_at)}
    assert replayed_by_symbol([*orders, close_line, late], exchange.rules_path) == (trades, events)
    # What a worker rebuilds from the changelogs (lots of 100): GTC and the late DAY order rest.
    assert resting_orders(exchange) == {
        "PETR4": [("d3", "DAY", 1), ("g1", "GTC", 2), ("g2", "GTC", 3)],
        "VALE3": [("v1", "DAY", 1)],
    }
