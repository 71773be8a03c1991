"""The exchange's Faust agents on the real broker: tapes in, exact trades and events out.

Every test runs real workers (``faust -A brokerflow.app worker``) as subprocesses, on topics with
a unique prefix and a unique app id and data dir, and reads the outputs back with a
``read_committed`` consumer. Expected outputs come from ``brokerflow match``'s replay of the same
tape (the same matching code path), compared per symbol, in order, record for record: a lost or
duplicated record fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from brokerflow.exchange.io import publish_commands, read_topic
from brokerflow.kafka_io import consumer, producer
from brokerflow.matching import Exchange
from brokerflow.matching.replay import load_rules
from brokerflow.schemas import CloseSession, PlaceOrder, decode
from brokerflow.settings import Settings
from brokerflow.tapes import orders as tapegen
from brokerflow.topics import catalog, delete_topics, ensure_topics

from .exchange_workers import (
    IsolatedExchange,
    by_symbol,
    changelog_engines,
    isolated_exchange,
    kafka_settings,
    replayed_book_by_symbol,
    replayed_by_symbol,
    stop,
)

pytestmark = pytest.mark.integration


T0 = "2026-01-02T13:00:00Z"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return kafka_settings()


@pytest.fixture
def exchange(settings: Settings, unique: str, tmp_path: Path) -> IsolatedExchange:
    return isolated_exchange(settings, unique, tmp_path, "x")


async def _create_topics(settings: Settings) -> None:
    await ensure_topics(settings)


def count(grouped: dict[str, list[Any]]) -> int:
    return sum(len(items) for items in grouped.values())


async def read_outputs(
    settings: Settings, trades: int, events: int, timeout_s: float = 180.0
) -> tuple[dict, dict]:
    topics = catalog(settings)
    got_trades = await read_topic(
        settings, topics.trade_executions.name, min_count=trades, timeout_s=timeout_s
    )
    got_events = await read_topic(
        settings, topics.order_events.name, min_count=events, timeout_s=timeout_s, settle_s=2.0
    )
    # Read trades again after the settle: a late duplicate would show here.
    got_trades = await read_topic(settings, topics.trade_executions.name, min_count=trades)
    return by_symbol(got_trades), by_symbol(got_events)


def one_worker_outputs(
    exchange: IsolatedExchange, expected_trades: dict, expected_events: dict, **env: str
) -> tuple[dict, dict]:
    """Start worker w1, read its committed trades and events until the expected counts (and a
    settle), then stop it cleanly."""
    worker = exchange.start_worker("w1", **env)
    try:
        return asyncio.run(
            read_outputs(exchange.settings, count(expected_trades), count(expected_events))
        )
    finally:
        assert stop(worker) == 0


async def wait_for_committed(
    settings: Settings, topic: str, at_least: int, timeout_s: float
) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = await read_topic(settings, topic, timeout_s=5)
        if len(records) >= at_least:
            return len(records)
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} committed records on {topic}")


def changelog_books(exchange: IsolatedExchange) -> dict[str, Any]:
    """The books a worker would rebuild: the tables' changelogs, latest value per key."""
    return {symbol: snapshot(engine) for symbol, engine in changelog_engines(exchange).items()}


def snapshot(engine: Any) -> dict[str, Any]:
    return {
        "state": engine.state().to_record(),
        "resting": [order.to_record() for order in engine.resting_orders()],
        "closed": sorted(engine.closed_order_ids()),
    }


def replayed_books(lines: Sequence[str], rules_path: Path) -> dict[str, Any]:
    """The books after an uninterrupted run: the replay's engines at the end of the tape."""
    from brokerflow.matching.replay import TapeDecoder

    exchange = Exchange(load_rules(str(rules_path)))
    decode_line = TapeDecoder(exchange).decode
    for line in lines:
        decoded = decode_line(line)
        if decoded is not None:
            engine, command = decoded
            assert engine is not None
            engine.process(command)
    return {symbol: snapshot(engine) for symbol, engine in exchange.engines.items()}


# --- tests -----------------------------------------------------------------------------------


def test_hand_written_tape_gives_exact_trades_dead_letters_and_session_closes(
    exchange: IsolatedExchange,
) -> None:
    """Exact trades by hand, a bad payload dead-lettered mid-stream, a duplicate orderId, and a
    session closed twice for one date (the second close expires nothing)."""
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    topics = catalog(settings)
    tape = [
        {"op": "new", "orderId": "s1", "accountId": "a1", "symbol": "PETR4", "side": "SELL",
         "type": "LIMIT", "timeInForce": "GTC", "quantity": 300, "price": "38.52", "eventTime": T0},
        {"op": "new", "orderId": "s2", "accountId": "a2", "symbol": "PETR4", "side": "SELL",
         "type": "LIMIT", "timeInForce": "DAY", "quantity": 200, "price": "38.53", "eventTime": T0},
        {"op": "new", "orderId": "b1", "accountId": "a3", "symbol": "PETR4", "side": "BUY",
         "type": "LIMIT", "timeInForce": "GTC", "quantity": 400, "price": "38.53", "eventTime": T0},
    ]  # fmt: skip
    close = CloseSession(
        symbol="PETR4",
        session_date=date(2026, 1, 2),
        event_time=datetime(2026, 1, 2, 20, 0, tzinfo=UTC),
    )
    later = PlaceOrder(
        order_id="s3", account_id="a2", symbol="PETR4", side="SELL", order_type="LIMIT",
        time_in_force="DAY", quantity=Decimal(100), price=Decimal("39.00"),
        event_time=datetime(2026, 1, 2, 20, 1, tzinfo=UTC),
    )  # fmt: skip
    duplicate = later.model_copy(update={"quantity": Decimal(200)})

    async def publish_all() -> None:
        await publish_commands(settings, tape[:2])
        async with producer(settings) as client:  # garbage between two good commands
            await client.send_and_wait(topics.order_commands.name, b"{not json", key=b"PETR4")
        await publish_commands(settings, [tape[2], close, later, duplicate, close])

    asyncio.run(publish_all())
    worker = exchange.start_worker("w1")
    try:
        trades, events = asyncio.run(read_outputs(settings, trades=2, events=10))
        letters = asyncio.run(
            read_topic(settings, topics.dead_letters.name, min_count=1, timeout_s=30)
        )
    finally:
        assert stop(worker) == 0
    assert [
        (t["tradeId"], t["price"], t["quantity"], t["buyOrderId"], t["sellOrderId"])
        for t in trades["PETR4"]
    ] == [("PETR4-T1", "38.52", "300", "b1", "s1"), ("PETR4-T2", "38.53", "100", "b1", "s2")]
    assert [(e["type"], e["orderId"], e["sequence"]) for e in events["PETR4"]] == [
        ("OrderAccepted", "s1", 1),
        ("OrderAccepted", "s2", 2),
        ("OrderAccepted", "b1", 3),
        ("OrderFilled", "s1", 5),
        ("OrderPartiallyFilled", "b1", 6),
        ("OrderPartiallyFilled", "s2", 8),
        ("OrderFilled", "b1", 9),
        ("OrderExpired", "s2", 10),  # the DAY order's last 100, at the close
        ("OrderAccepted", "s3", 11),  # placed after the close: the repeated close ignores it
        ("OrderDuplicateIgnored", "s3", 12),
    ]
    expired = events["PETR4"][7]
    assert (expired["expiredQuantity"], expired["eventTime"]) == (
        "100",
        "2026-01-02T20:00:00.000000Z",
    )
    (letter,) = [decode(record.value) for record in letters]
    assert (letter.reason, letter.payload, letter.key) == ("NOT_JSON", "{not json", "PETR4")


def test_generated_tape_matches_the_replay_exactly(exchange: IsolatedExchange) -> None:
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    lines = tapegen.generate_tape(3000, seed=11)
    expected_trades, expected_events = replayed_by_symbol(lines, exchange.rules_path)
    asyncio.run(publish_commands(settings, lines))
    trades, events = one_worker_outputs(exchange, expected_trades, expected_events)
    assert count(expected_trades) > 500
    assert trades == expected_trades
    assert events == expected_events
    assert (exchange.workdir / "data" / "slot-0.clean").exists()
    # The exchange's market data, in the same transactions: record for record the pure feed.
    expected_book = replayed_book_by_symbol(lines, exchange.rules_path)
    book = by_symbol(asyncio.run(read_topic(settings, catalog(settings).exchange_book.name)))
    assert count(expected_book) > 1000
    assert book == expected_book


async def commit_group_offsets_at_the_end(settings: Settings, group_id: str) -> int:
    """What an operator's ``--reset-offsets --to-latest`` does: the group's committed offsets
    move to the end of every command partition. Returns how many records that skips."""
    spec = catalog(settings).order_commands
    async with consumer(settings, group_id=group_id) as client:
        partitions = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        client.assign(partitions)
        ends = await client.end_offsets(partitions)
        await client.commit(ends)
    return sum(ends.values())


def test_commands_the_consumer_never_delivers_are_read_back_by_the_catch_up_timer(
    exchange: IsolatedExchange,
) -> None:
    """The exchange state, not the consumer group, says which command comes next. With the
    group's offsets moved past every command, Faust delivers nothing, and no later command
    arrives to reveal the gap: the idle-partition timer must find and process all of them."""
    settings = exchange.settings
    lines = tapegen.generate_tape(1000, seed=5)
    expected_trades, expected_events = replayed_by_symbol(lines, exchange.rules_path)
    asyncio.run(publish_commands(settings, lines))
    skipped = asyncio.run(
        commit_group_offsets_at_the_end(settings, exchange.env["EXCHANGE_APP_ID"])
    )
    assert skipped == 1000
    trades, events = one_worker_outputs(
        exchange, expected_trades, expected_events, EXCHANGE_CATCH_UP_INTERVAL_S="1.0"
    )
    assert count(expected_trades) > 100
    assert trades == expected_trades
    assert events == expected_events
    assert "were not delivered; read" in exchange.log("w1")


@pytest.mark.slow
def test_kill_9_mid_tape_then_restart_loses_and_duplicates_nothing(
    exchange: IsolatedExchange,
) -> None:
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    lines = tapegen.generate_tape(8000, seed=12)
    expected_trades, expected_events = replayed_by_symbol(lines, exchange.rules_path)
    asyncio.run(publish_commands(settings, lines))
    topics = catalog(settings)
    first = exchange.start_worker("w1")
    try:
        seen = asyncio.run(
            wait_for_committed(
                settings, topics.order_events.name, count(expected_events) // 4, timeout_s=120
            )
        )
    finally:
        first.kill()  # SIGKILL: no commit, no clean-shutdown marker
        first.wait(30)
    assert seen < count(expected_events), "the worker finished before the kill; use a longer tape"
    second = exchange.start_worker("w2")
    try:
        trades, events = asyncio.run(
            read_outputs(settings, count(expected_trades), count(expected_events))
        )
    finally:
        assert stop(second) == 0
    assert "wiped its RocksDB store" in exchange.log("w2")
    assert count(trades) == count(expected_trades)
    assert trades == expected_trades
    assert events == expected_events
    assert changelog_books(exchange) == replayed_books(lines, exchange.rules_path)
    # The book feed continues its sequence across the kill: nothing lost, nothing repeated.
    book = by_symbol(asyncio.run(read_topic(settings, topics.exchange_book.name)))
    assert book == replayed_book_by_symbol(lines, exchange.rules_path)


def wait_for_log(exchange: IsolatedExchange, name: str, text: str, times: int, timeout_s: float):
    """Wait until ``text`` appears ``times`` times in a worker's log; return those lines."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in exchange.log(name).splitlines() if text in line]
        if len(lines) >= times:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"{name} did not log {text!r} {times} times in {timeout_s:.0f} s")


@pytest.mark.slow
def test_second_worker_joining_and_first_leaving_mid_tape_lose_and_duplicate_nothing(
    exchange: IsolatedExchange,
) -> None:
    """Two rebalances while commands flow: the second worker joins and takes some partitions
    from the first (both then process), then the first stops and the second takes them all."""
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    lines = tapegen.generate_tape(9000, seed=13)
    expected_trades, expected_events = replayed_by_symbol(lines, exchange.rules_path)
    first_part, second_part, third_part = lines[:3000], lines[3000:6000], lines[6000:]
    asyncio.run(publish_commands(settings, first_part))
    first = exchange.start_worker("w1")
    second = None
    try:
        wait_for_log(exchange, "w1", "books restored", 1, 120)
        second = exchange.start_worker("w2")  # joins: the first gives some partitions up
        wait_for_log(exchange, "w2", "[^Worker]: Ready", 1, 120)
        asyncio.run(publish_commands(settings, second_part))  # processed by both workers
        shared = wait_for_log(exchange, "w1", "books restored", 2, 120)[-1]
        assert stop(first) == 0  # leaves: the second takes every partition
        asyncio.run(publish_commands(settings, third_part))
        trades, events = asyncio.run(
            read_outputs(settings, count(expected_trades), count(expected_events))
        )
        alone = wait_for_log(exchange, "w2", "books restored", 1, 10)[-1]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                stop(process)
    assert "partitions [0, 1, 2, 3, 4, 5]" not in shared  # the two really shared the topic
    assert "partitions [0, 1, 2, 3, 4, 5]" in alone
    # The partitions w1 kept came back from the checkpoints its revocation commit left, and
    # Faust's own recovery never waited for a changelog's closing transaction marker.
    _, from_checkpoints, table_partitions, _ = restore_lines(exchange, "w1")[1]
    assert from_checkpoints == table_partitions > 0
    for name in ("w1", "w2"):
        assert "Still fetching changelog topics for recovery" not in exchange.log(name)
    assert trades == expected_trades
    assert events == expected_events
    assert changelog_books(exchange) == replayed_books(lines, exchange.rules_path)


def restore_lines(exchange: IsolatedExchange, name: str) -> list[tuple[int, int, int, int]]:
    """(records, table partitions from local checkpoints, table partitions, records read from
    the changelogs) of each restore of the books a worker logged."""
    found = []
    for line in exchange.log(name).splitlines():
        match = re.search(
            r"books restored in [\d.]+ s: partitions \[[\d, ]*\], (\d+) records \((\d+) table "
            r"partitions of (\d+) from local checkpoints; (\d+) records read",
            line,
        )
        if match:
            found.append(tuple(int(group) for group in match.groups()))
    return found


@pytest.mark.slow
def test_clean_restarts_restore_from_local_checkpoints_plus_the_changelog_tail(
    exchange: IsolatedExchange,
) -> None:
    """w1 stops cleanly; w2, with a data dir of its own, processes more and stops; w1 starts
    again on its old store: it reads only what w2 wrote since its checkpoint (the tail), and
    the outputs and books still equal the replay's."""
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    lines = tapegen.generate_tape(6000, seed=14)
    ends = (2000, 4000, 6000)

    def run_until_processed(name: str, end: int, **env: str) -> None:
        trades, events = replayed_by_symbol(lines[:end], exchange.rules_path)
        worker = exchange.start_worker(name, **env)
        try:
            asyncio.run(read_outputs(settings, count(trades), count(events)))
        finally:
            assert stop(worker) == 0

    asyncio.run(publish_commands(settings, lines[: ends[0]]))
    run_until_processed("w1", ends[0])
    asyncio.run(publish_commands(settings, lines[ends[0] : ends[1]]))
    run_until_processed("w2", ends[1], EXCHANGE_DATA_DIR=str(exchange.workdir / "other-data"))
    asyncio.run(publish_commands(settings, lines[ends[1] :]))
    run_until_processed("w1-again", ends[2])

    (first,) = restore_lines(exchange, "w1")
    assert first[1] == 0  # a new store: the whole changelog
    again = restore_lines(exchange, "w1-again")
    records, from_checkpoints, table_partitions, read = again[0]
    assert from_checkpoints == table_partitions > 0
    # What w2 wrote was read and applied; what w1 had written before was not read again.
    assert 0 < read < records
    expected_trades, expected_events = replayed_by_symbol(lines, exchange.rules_path)
    trades, events = asyncio.run(
        read_outputs(settings, count(expected_trades), count(expected_events))
    )
    assert trades == expected_trades
    assert events == expected_events
    assert changelog_books(exchange) == replayed_books(lines, exchange.rules_path)


@pytest.mark.slow
def test_a_checkpoint_is_not_used_on_a_changelog_deleted_and_created_again(
    exchange: IsolatedExchange,
) -> None:
    """w1 stops cleanly on tape A; every topic is deleted and created again; w2, with a data
    dir of its own, runs tape B, which grows the new changelogs past w1's checkpoints; w1 then
    starts on its old store: it must read the new changelogs whole (its checkpoints' last
    records are not there), and tape C after it must match the replay of B and C."""
    settings = exchange.settings
    asyncio.run(_create_topics(settings))
    tape_a = tapegen.generate_tape(1500, seed=15)
    tape_bc = tapegen.generate_tape(5500, seed=16)
    tape_b, tape_c = tape_bc[:4000], tape_bc[4000:]

    def run_until_processed(name: str, lines: list[str], **env: str) -> None:
        trades, events = replayed_by_symbol(lines, exchange.rules_path)
        worker = exchange.start_worker(name, **env)
        try:
            asyncio.run(read_outputs(settings, count(trades), count(events)))
        finally:
            assert stop(worker) == 0

    asyncio.run(publish_commands(settings, tape_a))
    run_until_processed("w1", tape_a)
    app_id = exchange.env["EXCHANGE_APP_ID"]
    asyncio.run(
        delete_topics(
            settings,
            lambda name: name.startswith((settings.topic_prefix, f"{app_id}-")),
            wait_s=30,
        )
    )
    asyncio.run(_create_topics(settings))
    asyncio.run(publish_commands(settings, tape_b))
    run_until_processed("w2", tape_b, EXCHANGE_DATA_DIR=str(exchange.workdir / "other-data"))
    worker = exchange.start_worker("w1-again")
    try:
        wait_for_log(exchange, "w1-again", "books restored", 1, 120)
        asyncio.run(publish_commands(settings, tape_c))
        expected_trades, expected_events = replayed_by_symbol(tape_bc, exchange.rules_path)
        trades, events = asyncio.run(
            read_outputs(settings, count(expected_trades), count(expected_events))
        )
    finally:
        assert stop(worker) == 0
    assert trades == expected_trades
    assert events == expected_events
    # Every checkpoint of a partition that held records was refused; those of partitions that
    # held none (a tail from offset 0 is the whole changelog) may stand.
    _, from_checkpoints, table_partitions, _ = restore_lines(exchange, "w1-again")[0]
    assert from_checkpoints < table_partitions
    refused = [
        line
        for line in exchange.log("w1-again").splitlines()
        if "is not the one it saw" in line and "accounts_by_id" not in line
    ]
    assert len(refused) == table_partitions - from_checkpoints
