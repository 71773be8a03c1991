"""The main job's exchange part: a generated order tape matched by a real Faust worker.

Publishes a fixed tape of order commands (:func:`brokerflow.tapes.orders.generate_tape`) to the
command topic, runs ``faust -A brokerflow.app worker`` on it with exactly-once processing, reads
the trades and order events back with ``read_committed``, and checks them record for record
against ``brokerflow match``'s replay of the same tape (the same matching code, no Kafka).

It also publishes the first Binance trades of the bundled sample tape, of symbols the order tape
does not trade (so its trades cannot depend on them), to the namespace's market trades topic: the
worker turns them into ``SetReferencePrice`` commands, which are compared with what the pure
forwarding rules (:func:`~brokerflow.exchange.schedule.offer_price`) give for the same trades.

Everything lives in its own namespace (topic prefix ``demo-exchange.``, Faust app id
``brokerflow-demo-exchange``, data dir ``STACK_DIR/demo-exchange``), wiped first, so every run
prints the same trades.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from brokerflow.connectors import parse_frame
from brokerflow.connectors.tape import read_tape, sample_tape_path
from brokerflow.exchange.io import TopicRecord, follow_topic, publish_commands
from brokerflow.exchange.schedule import ReferenceState, offer_price, release_held
from brokerflow.kafka_io import producer, publish
from brokerflow.matching.replay import load_rules, replay
from brokerflow.schemas import SetReferencePrice, Trade, decode
from brokerflow.settings import Settings
from brokerflow.tapes import orders as tapegen
from brokerflow.topics import catalog, reset_topics

__all__ = [
    "EXCHANGE_APP_ID",
    "EXCHANGE_TOPIC_PREFIX",
    "ExchangeDemo",
    "exchange_settings",
    "print_exchange_demo",
    "run_exchange_demo",
]

EXCHANGE_TOPIC_PREFIX = "demo-exchange."
EXCHANGE_APP_ID = "brokerflow-demo-exchange"
TAPE_COMMANDS = 5_000
TAPE_SEED = 2026
MARKET_TRADES = 600


@dataclass(frozen=True, slots=True)
class ExchangeDemo:
    """What the exchange part saw, for the printout and the test."""

    commands: int
    trades: int
    events: int
    seconds: float
    matches_replay: bool
    trades_by_symbol: dict[str, int]
    first_trades: list[TopicRecord]
    market_trades: int
    #: symbol -> reference prices the worker forwarded, in order.
    reference_prices: dict[str, list[Decimal]]
    reference_prices_as_predicted: bool


def exchange_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"topic_prefix": EXCHANGE_TOPIC_PREFIX, "exchange_app_id": EXCHANGE_APP_ID}
    )


def _expected(lines: list[str], rules_path: Path) -> tuple[list[str], list[str]]:
    """The replay's trades and other events, as JSON lines, in processing order."""
    out, err = io.StringIO(), io.StringIO()
    replay(lines, out, err, load_rules(str(rules_path)))
    trades, events = [], []
    for line in out.getvalue().splitlines():
        (trades if json.loads(line)["type"] == "TradeExecuted" else events).append(line)
    return trades, events


def _by_symbol(lines: list[str]) -> dict[str, list[dict[str, object]]]:
    grouped: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        record = json.loads(line)
        grouped.setdefault(str(record["symbol"]), []).append(record)
    return grouped


def sample_market_trades(count: int) -> list[Trade]:
    """The first ``count`` Binance trades of the bundled sample tape, normalized, of symbols the
    order tape does not trade (so their reference prices cannot change its trades)."""
    traded = {symbol for symbol, *_ in tapegen.SYMBOLS}
    trades: list[Trade] = []
    for frame in read_tape(sample_tape_path()):
        if frame.vendor == "binance":
            trades.extend(
                r
                for r in parse_frame(*frame).records
                if isinstance(r, Trade) and r.symbol not in traded
            )
            if len(trades) >= count:
                break
    return trades[:count]


def predicted_reference_prices(
    trades: list[Trade], interval: timedelta
) -> dict[str, list[Decimal]]:
    """What the forwarding rules make of these trades, the held last prices included."""
    states: dict[str, ReferenceState] = {}
    forwarded: dict[str, list[Decimal]] = defaultdict(list)
    for trade in trades:
        state, send = offer_price(
            states.get(trade.symbol), str(trade.venue), trade.price, trade.event_time, interval
        )
        states[trade.symbol] = state
        if send:
            forwarded[trade.symbol].append(trade.price)
    for symbol, state in states.items():
        released = release_held(state)
        if released is not None:
            forwarded[symbol].append(released.price)
    return dict(sorted(forwarded.items()))


async def _publish_market_trades(settings: Settings, trades: list[Trade]) -> None:
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        topic = catalog(settings).market_trades.name
        await publish(client, topic, [(trade.symbol, trade) for trade in trades])


def _read_while_alive(
    settings: Settings,
    worker: subprocess.Popen[bytes],
    log_path: Path,
    topic: str,
    count: int,
    timeout_s: float = 300.0,
) -> list[TopicRecord]:
    """Read ``topic`` until ``count`` records are committed; fail at once if the worker died."""
    try:
        followed = asyncio.run(
            follow_topic(
                settings, topic, count, alive=lambda: worker.poll() is None, timeout_s=timeout_s
            )
        )
    except (RuntimeError, TimeoutError) as exc:
        raise type(exc)(f"{exc}; see {log_path}") from None
    return followed.records


def run_exchange_demo(user_settings: Settings) -> ExchangeDemo:
    settings = exchange_settings(user_settings)
    workdir = (settings.stack_dir / "demo-exchange").absolute()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    asyncio.run(reset_topics(settings, (EXCHANGE_TOPIC_PREFIX, f"{EXCHANGE_APP_ID}-")))
    rules_path = workdir / "rules.json"
    rules_path.write_text(json.dumps(tapegen.rules_document()))
    lines = tapegen.generate_tape(TAPE_COMMANDS, seed=TAPE_SEED)
    expected_trades, expected_events = _expected(lines, rules_path)
    asyncio.run(publish_commands(settings, lines))
    market_trades = sample_market_trades(MARKET_TRADES)
    interval = timedelta(seconds=settings.exchange_reference_min_interval_s)
    predicted = predicted_reference_prices(market_trades, interval)
    asyncio.run(_publish_market_trades(settings, market_trades))

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": EXCHANGE_TOPIC_PREFIX,
        "EXCHANGE_APP_ID": EXCHANGE_APP_ID,
        "EXCHANGE_DATA_DIR": str(workdir / "data"),
        "EXCHANGE_RULES_PATH": str(rules_path),
        "EXCHANGE_SESSION_SYMBOLS": "",
        "EXCHANGE_REFERENCE_MIN_INTERVAL_S": str(settings.exchange_reference_min_interval_s),
    }
    faust = str(Path(sys.executable).with_name("faust"))
    log_path = workdir / "worker.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [faust, "-A", "brokerflow.app", "worker", "-l", "info"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            topics = catalog(settings)
            trades = _read_while_alive(
                settings, worker, log_path, topics.trade_executions.name, len(expected_trades)
            )
            events = _read_while_alive(
                settings, worker, log_path, topics.order_events.name, len(expected_events)
            )
            seconds = time.monotonic() - started
            commands = _read_while_alive(
                settings,
                worker,
                log_path,
                topics.order_commands.name,
                len(lines) + sum(len(prices) for prices in predicted.values()),
            )
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
    got_trades = [record.value.decode() for record in trades]
    got_events = [record.value.decode() for record in events]
    matches = _by_symbol(got_trades) == _by_symbol(expected_trades) and _by_symbol(
        got_events
    ) == _by_symbol(expected_events)
    references: dict[str, list[Decimal]] = defaultdict(list)
    for record in commands:
        command = decode(record.value)
        if isinstance(command, SetReferencePrice) and command.source is not None:
            # forwarded from market data (the tape's own reference lines carry no source)
            references[command.symbol].append(command.price)
    references = dict(sorted(references.items()))
    return ExchangeDemo(
        commands=len(lines),
        trades=len(trades),
        events=len(events),
        seconds=seconds,
        matches_replay=matches,
        trades_by_symbol=dict(
            sorted(Counter(record.key.decode() for record in trades if record.key).items())
        ),
        first_trades=trades[:3],
        market_trades=len(market_trades),
        reference_prices=references,
        reference_prices_as_predicted=references == predicted,
    )


def print_exchange_demo(user_settings: Settings) -> bool:
    """Run the exchange part and print it; True when the worker's output equals the replay."""
    settings = exchange_settings(user_settings)
    print(
        f"  namespace reset: topics {EXCHANGE_TOPIC_PREFIX}*, Faust app {EXCHANGE_APP_ID}; "
        f"{TAPE_COMMANDS} generated commands published to {catalog(settings).order_commands.name}"
    )
    print("  worker: faust -A brokerflow.app worker -l info   (exactly-once, RocksDB tables)")
    result = run_exchange_demo(user_settings)
    print(
        f"  {result.commands} commands -> {result.trades} trades, {result.events} order events "
        f"in {result.seconds:.1f} s including worker start-up"
    )
    print(
        "  trades per symbol: "
        + ", ".join(f"{symbol} {n}" for symbol, n in result.trades_by_symbol.items())
    )
    verdict = "identical" if result.matches_replay else "DIFFERENT"
    print(f"  per symbol, record for record, {verdict} to `brokerflow match` on the same tape")
    topic = catalog(settings).trade_executions.name
    print(f"  some trades (kcat -b {settings.kafka_bootstrap_servers} -C -t {topic} -e):")
    for record in result.first_trades:
        print(f"    {(record.key or b'').decode()}  {record.value.decode()[:150]}")
    forwarded = sum(len(prices) for prices in result.reference_prices.values())
    print(
        f"  market data: {result.market_trades} Binance trades of the sample tape (symbols the "
        f"order tape does not trade) -> "
        f"{forwarded} SetReferencePrice commands (changed prices, at most one per "
        f"{settings.exchange_reference_min_interval_s:g} s of trade time, the last one held "
        "and sent after the wait):"
    )
    for symbol, prices in result.reference_prices.items():
        print(f"    {symbol}: {len(prices)}, last {prices[-1]}")
    verdict = "as" if result.reference_prices_as_predicted else "NOT as"
    print(f"  {verdict} the pure forwarding rules predict for the same trades")
    return result.matches_replay and result.trades > 0 and result.reference_prices_as_predicted
