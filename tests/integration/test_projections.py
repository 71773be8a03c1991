"""The read-model projector on the real broker and MongoDB wire server.

A realistic session, built with the schema classes and published where the exchange, the accounts
agent and its decisions put them: account a1 buys 300 PETR4 at a 38.60 limit (100 @ 38.52 from
one seller, 200 @ 38.56 from another), loses a cancel to the fill, sells 100 @ 39.00 (D+2), has a
VALE3 order rejected by the exchange and another cancelled, moves 200 VALE3 in from another
custodian, and the sale settles; account a2's order is refused by the accounts agent. Orders of
other participants (x1, x2, x3) are on the same topic and have no document. Two of a1's ledger
entries are published before the one they follow, and one record is not a message at all.

Amounts (B3 fees 0.03 % of notional per side, half-even to the centavo): 3852.00 -> 1.16,
7712.00 -> 2.31, 3900.00 -> 1.17, 6100.00 -> 1.83.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.kafka_io import producer, publish
from brokerflow.projections import ProjectorStats, run_projector
from brokerflow.schemas import (
    AccountOpened,
    CancelRequestRejected,
    CashDeposited,
    CashSettled,
    CustodyTransferredIn,
    FillSettled,
    FundsHeld,
    FundsReleased,
    HoldReleaseReason,
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderType,
    RequestAccepted,
    RequestRefused,
    SharesHeld,
    Side,
    TimeInForce,
    decode,
)
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

pytestmark = pytest.mark.integration

WAIT_S = 90.0
T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)
BAD_RECORD = b'{"type":"CashDeposited","schemaVersion":1,"accountId":"a1","amount":1.5}'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- the session -------------------------------------------------------------------------------


def pending(
    order_id: str,
    account_id: str,
    user_id: str,
    symbol: str,
    side: str,
    quantity: str,
    price: str,
    created: float,
) -> dict[str, Any]:
    """The document the API inserts before it publishes the order request."""
    return {
        "_id": order_id,
        "orderId": order_id,
        "userId": user_id,
        "accountId": account_id,
        "symbol": symbol,
        "side": side,
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": quantity,
        "price": price,
        "status": "PENDING",
        "filledQuantity": "0",
        "leavesQuantity": quantity,
        "averagePrice": None,
        "fills": [],
        "rejectReason": None,
        "rejectMessage": None,
        "idempotencyKey": None,
        "createdAt": iso(created),
        "updatedAt": iso(created),
        "lastSequence": -1,
        "marketPrice": None,
    }


PENDING_ORDERS = [
    pending("o1", "a1", "u1", "PETR4", "BUY", "300", "38.60", 1),
    pending("o2", "a1", "u1", "PETR4", "SELL", "100", "39.00", 10),
    pending("o3", "a2", "u2", "PETR4", "BUY", "10", "50.00", 11),
    pending("o4", "a1", "u1", "VALE3", "BUY", "100", "80.00", 12),
    pending("o5", "a1", "u1", "VALE3", "BUY", "100", "61.00", 13),
]


def accepted(
    order_id: str, account: str, symbol: str, seq: int, side: Side, qty: str, price: str, t: float
) -> OrderAccepted:
    return OrderAccepted(
        order_id=order_id,
        account_id=account,
        symbol=symbol,
        sequence=seq,
        filled_quantity=Decimal(0),
        leaves_quantity=Decimal(qty),
        side=side,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=Decimal(qty),
        price=Decimal(price),
        event_time=at(t),
    )


def fill(
    cls: type[OrderFilled] | type[OrderPartiallyFilled],
    order_id: str,
    account: str,
    seq: int,
    trade: str,
    price: str,
    qty: str,
    filled: str,
    leaves: str,
    t: float,
) -> Message:
    return cls(
        order_id=order_id,
        account_id=account,
        symbol="PETR4",
        sequence=seq,
        filled_quantity=Decimal(filled),
        leaves_quantity=Decimal(leaves),
        trade_id=trade,
        last_price=Decimal(price),
        last_quantity=Decimal(qty),
        event_time=at(t),
    )


def order_events() -> list[Message]:
    """order-events-v1, keyed by symbol, with the exchange's per-symbol sequences."""
    return [
        accepted("x1", "ext", "PETR4", 1, Side.SELL, "100", "38.52", 1),
        accepted("x2", "ext", "PETR4", 2, Side.SELL, "200", "38.56", 1),
        accepted("o1", "a1", "PETR4", 3, Side.BUY, "300", "38.60", 2),
        fill(OrderFilled, "x1", "ext", 4, "PETR4-T1", "38.52", "100", "100", "0", 2),
        fill(OrderPartiallyFilled, "o1", "a1", 5, "PETR4-T1", "38.52", "100", "100", "200", 2),
        fill(OrderFilled, "x2", "ext", 6, "PETR4-T2", "38.56", "200", "200", "0", 2),
        fill(OrderFilled, "o1", "a1", 7, "PETR4-T2", "38.56", "200", "300", "0", 2),
        OrderRejected(  # the user's cancel came after the fill: lost, the order stays FILLED
            order_id="o1",
            account_id="a1",
            symbol="PETR4",
            sequence=8,
            filled_quantity=Decimal(0),
            leaves_quantity=Decimal(0),
            reason="UNKNOWN_ORDER",
            detail="CancelOrder: order 'o1' is no longer resting (filled, cancelled, expired or "
            "rejected)",
            event_time=at(3),
        ),
        accepted("o2", "a1", "PETR4", 9, Side.SELL, "100", "39.00", 11),
        accepted("x3", "ext", "PETR4", 10, Side.BUY, "100", "39.00", 12),
        fill(OrderFilled, "o2", "a1", 11, "PETR4-T3", "39.00", "100", "100", "0", 12),
        fill(OrderFilled, "x3", "ext", 12, "PETR4-T3", "39.00", "100", "100", "0", 12),
        OrderRejected(
            order_id="o4",
            account_id="a1",
            symbol="VALE3",
            sequence=1,
            filled_quantity=Decimal(0),
            leaves_quantity=Decimal(0),
            reason="PRICE_BAND",
            detail="PlaceOrder: price 80.00 is outside the band 55.08-67.32",
            event_time=at(13),
        ),
        accepted("o5", "a1", "VALE3", 2, Side.BUY, "100", "61.00", 14),
        OrderCancelled(
            order_id="o5",
            account_id="a1",
            symbol="VALE3",
            sequence=3,
            filled_quantity=Decimal(0),
            leaves_quantity=Decimal(0),
            reason="USER",
            cancelled_quantity=Decimal(100),
            event_time=at(20),
        ),
    ]


def ledger(account: str, seq: int, t: float) -> dict[str, Any]:
    return {
        "account_id": account,
        "sequence": seq,
        "entry_id": f"{account}:{seq}",
        "currency": "BRL",
        "event_time": at(t),
    }


def ledger_events() -> list[Message]:
    """ledger-events-v1 in publication order: a1's entries 5 and 6 come before 4."""
    a1 = [
        AccountOpened(**ledger("a1", 0, 0), user_id="u1"),
        CashDeposited(**ledger("a1", 1, 0), amount=Decimal("100000.00")),
        # 300 x 38.60 = 11580.00 + 3.47 fees (11580 x 0.0003 = 3.474)
        FundsHeld(**ledger("a1", 2, 1), order_id="o1", amount=Decimal("11583.47")),
        FillSettled(  # BUY 100 @ 38.52; hold used 3860.00 + 1.16
            **ledger("a1", 3, 2),
            trade_id="PETR4-T1",
            order_id="o1",
            symbol="PETR4",
            side=Side.BUY,
            quantity=Decimal(100),
            price=Decimal("38.52"),
            fees=Decimal("1.16"),
            cash_delta=Decimal("-3853.16"),
            position_delta=Decimal(100),
            cash_hold_released=Decimal("3861.16"),
            shares_hold_released=Decimal(0),
            position_quantity=Decimal(100),
            average_price=Decimal("38.5316"),
            realized_pnl=Decimal(0),
        ),
        FillSettled(  # BUY 200 @ 38.56; the order is done: the rest of the hold, 7722.31
            **ledger("a1", 4, 2),
            trade_id="PETR4-T2",
            order_id="o1",
            symbol="PETR4",
            side=Side.BUY,
            quantity=Decimal(200),
            price=Decimal("38.56"),
            fees=Decimal("2.31"),
            cash_delta=Decimal("-7714.31"),
            position_delta=Decimal(200),
            cash_hold_released=Decimal("7722.31"),
            shares_hold_released=Decimal(0),
            position_quantity=Decimal(300),
            average_price=Decimal("38.55823333"),
            realized_pnl=Decimal(0),
        ),
        SharesHeld(**ledger("a1", 5, 11), order_id="o2", symbol="PETR4", quantity=Decimal(100)),
        FillSettled(  # SELL 100 @ 39.00, unsettled until D+2
            **ledger("a1", 6, 12),
            trade_id="PETR4-T3",
            order_id="o2",
            symbol="PETR4",
            side=Side.SELL,
            quantity=Decimal(100),
            price=Decimal("39.00"),
            fees=Decimal("1.17"),
            cash_delta=Decimal("3898.83"),
            position_delta=Decimal(-100),
            cash_hold_released=Decimal(0),
            shares_hold_released=Decimal(100),
            position_quantity=Decimal(200),
            average_price=Decimal("38.55823333"),
            realized_pnl=Decimal("43.01"),
            settlement_date=date(2026, 6, 29),
        ),
        # 100 x 61.00 = 6100.00 + 1.83
        FundsHeld(**ledger("a1", 7, 14), order_id="o5", amount=Decimal("6101.83")),
        FundsReleased(
            **ledger("a1", 8, 20),
            order_id="o5",
            amount=Decimal("6101.83"),
            reason=HoldReleaseReason.ORDER_CANCELLED,
        ),
        CustodyTransferredIn(
            **ledger("a1", 9, 30),
            symbol="VALE3",
            quantity=Decimal(200),
            price=Decimal("61.20"),
            position_quantity=Decimal(200),
            average_price=Decimal("61.20"),
        ),
        CashSettled(
            **ledger("a1", 10, 4 * 86400),
            trade_id="PETR4-T3",
            amount=Decimal("3898.83"),
            settlement_date=date(2026, 6, 29),
        ),
    ]
    a2 = [
        AccountOpened(**ledger("a2", 0, 0), user_id="u2"),
        CashDeposited(**ledger("a2", 1, 0), amount=Decimal("100.00")),
    ]
    return [*a1[:4], a1[5], a1[6], a1[4], *a1[7:], *a2]


def account_events() -> list[Message]:
    decision = {"account_id": "a1", "command": "RequestOrder"}
    return [
        RequestAccepted(**decision, request_id="o1", order_id="o1", event_time=at(1)),
        RequestRefused(
            request_id="o3",
            account_id="a2",
            command="RequestOrder",
            order_id="o3",
            code="INSUFFICIENT_BUYING_POWER",
            message="buying power 100.00 BRL; the order needs 500.15 BRL",
            event_time=at(11),
        ),
        CancelRequestRejected(
            **decision,
            request_id="c1",
            order_id="o1",
            reason="UNKNOWN_ORDER",
            event_time=at(3),
        ),
    ]


# --- what the read models must hold, computed by hand -----------------------------------------


def fill_doc(trade: str, price: str, qty: str, fees: str, t: float) -> dict[str, Any]:
    return {"executionId": trade, "price": price, "quantity": qty, "fees": fees, "time": iso(t)}


def expected_orders() -> dict[str, dict[str, Any]]:
    o1, o2, o3, o4, o5 = (dict(doc) for doc in PENDING_ORDERS)
    o1.update(
        status="FILLED",
        filledQuantity="300",
        leavesQuantity="0",
        # (38.52 x 100 + 38.56 x 200) / 300 = 11564 / 300 = 38.5466666... -> 38.54666667
        averagePrice="38.54666667",
        fills=[
            fill_doc("PETR4-T1", "38.52", "100", "1.16", 2),
            fill_doc("PETR4-T2", "38.56", "200", "2.31", 2),
        ],
        updatedAt=iso(2),
        lastSequence=7,
    )
    o2.update(
        status="FILLED",
        filledQuantity="100",
        leavesQuantity="0",
        averagePrice="39.00000000",
        fills=[fill_doc("PETR4-T3", "39.00", "100", "1.17", 12)],
        updatedAt=iso(12),
        lastSequence=11,
    )
    o3.update(
        status="REJECTED",
        leavesQuantity="0",
        rejectReason="INSUFFICIENT_BUYING_POWER",
        rejectMessage="buying power 100.00 BRL; the order needs 500.15 BRL",
        updatedAt=iso(11),
    )
    o4.update(
        status="REJECTED",
        leavesQuantity="0",
        rejectReason="PRICE_BAND",
        rejectMessage="PlaceOrder: price 80.00 is outside the band 55.08-67.32",
        updatedAt=iso(13),
        lastSequence=1,
    )
    o5.update(status="CANCELLED", leavesQuantity="0", updatedAt=iso(20), lastSequence=3)
    return {doc["_id"]: doc for doc in (o1, o2, o3, o4, o5)}


EXPECTED_ACCOUNTS = {
    # cash 100000.00 - 3853.16 - 7714.31 + 3898.83 (settled) = 92331.36
    # held 11583.47 - 3861.16 - 7722.31 + 6101.83 - 6101.83 = 0.00
    "a1": {
        "_id": "a1",
        "accountId": "a1",
        "userId": "u1",
        "sequence": 10,
        "balances": {"BRL": {"cash": "92331.36", "held": "0.00", "unsettled": "0.00"}},
        "sharesHeld": {},
    },
    "a2": {
        "_id": "a2",
        "accountId": "a2",
        "userId": "u2",
        "sequence": 1,
        "balances": {"BRL": {"cash": "100.00", "held": "0", "unsettled": "0"}},
        "sharesHeld": {},
    },
}
EXPECTED_POSITIONS = {
    "a1|PETR4": {
        "_id": "a1|PETR4",
        "accountId": "a1",
        "symbol": "PETR4",
        "currency": "BRL",
        "quantity": "200",
        "averagePrice": "38.55823333",
        "realizedPnl": "43.01",
        "updatedAt": iso(12),
        "sequence": 6,
    },
    "a1|VALE3": {
        "_id": "a1|VALE3",
        "accountId": "a1",
        "symbol": "VALE3",
        "currency": "BRL",
        "quantity": "200",
        "averagePrice": "61.20",
        "realizedPnl": "0",
        "updatedAt": iso(30),
        "sequence": 9,
    },
}


# --- plumbing ----------------------------------------------------------------------------------


@pytest.fixture
async def isolated(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> Settings:
    """Own topics (created), own database, own consumer group; the API's PENDING orders in."""
    mine = settings.model_copy(
        update={
            "topic_prefix": f"proj-{unique}.",
            "mongo_database": mongo_db.name,
            "projections_group_id": f"proj-{unique}",
        }
    )
    topics = catalog(mine)
    await ensure_topics(
        mine,
        [topics.order_events, topics.ledger_events, topics.account_events, topics.dead_letters],
    )
    await mongo_db["orders"].insert_many([dict(doc) for doc in PENDING_ORDERS])
    return mine


def records(settings: Settings) -> Iterator[tuple[str, str, Message]]:
    """(topic, key, message) of the whole session, in publication order per topic."""
    topics = catalog(settings)
    for event in order_events():
        yield topics.order_events.name, event.symbol, event  # type: ignore[attr-defined]
    for event in ledger_events():
        yield topics.ledger_events.name, event.account_id, event  # type: ignore[attr-defined]
    for event in account_events():
        yield topics.account_events.name, event.account_id, event  # type: ignore[attr-defined]


RECORDS = len(order_events()) + len(ledger_events()) + len(account_events()) + 1  # + the bad one


async def publish_session(
    settings: Settings,
    part: slice = slice(None),
    *,
    topics: Iterable[str] | None = None,
    bad_record: bool = True,
) -> None:
    """Publish (part of) the session, only to ``topics`` if given; the bad record after it."""
    wanted = None if topics is None else set(topics)
    session = [r for r in list(records(settings))[part] if wanted is None or r[0] in wanted]
    async with producer(settings) as client:
        for topic in dict.fromkeys(t for t, _, _ in session):
            await publish(client, topic, [(k, m) for t, k, m in session if t == topic])
        if bad_record:
            topic = catalog(settings).ledger_events.name
            await client.send_and_wait(topic, BAD_RECORD, key=b"a1")


async def snapshot(db: AsyncDatabase) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {doc["_id"]: doc async for doc in db[name].find({})}
        for name in ("orders", "accounts", "positions")
    }


def expected() -> dict[str, dict[str, dict[str, Any]]]:
    return {
        "orders": expected_orders(),
        "accounts": EXPECTED_ACCOUNTS,
        "positions": EXPECTED_POSITIONS,
    }


async def wait_for(db: AsyncDatabase, wanted: dict[str, Any]) -> dict[str, Any]:
    """The read models once they equal ``wanted``, or as they are after WAIT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        now = await snapshot(db)
        if now == wanted or loop.time() > deadline:
            return now
        await asyncio.sleep(0.2)


async def wait_until(condition: Any, what: str) -> None:
    """Poll ``condition`` (the projector's counters) for up to WAIT_S."""
    for _ in range(int(WAIT_S / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition(), f"gave up waiting: {what}"


class Running:
    """A projector task of the test's own, stopped cleanly or cancelled like a crash."""

    def __init__(self, settings: Settings) -> None:
        self.stop = asyncio.Event()
        self.stats = ProjectorStats()
        self.task = asyncio.create_task(run_projector(settings, self.stop, stats=self.stats))

    async def finish(self) -> ProjectorStats:
        self.stop.set()
        return await self.task

    async def crash(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# --- the tests ---------------------------------------------------------------------------------


async def test_projects_the_session_and_a_replay_from_offset_zero_changes_nothing(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    topics = catalog(isolated)
    # The ledger and the decisions first: the fills' fees wait for their fills.
    await publish_session(isolated, topics=[topics.ledger_events.name, topics.account_events.name])
    first = Running(isolated)
    try:
        before_fills = expected()
        before_fills["orders"] = {doc["_id"]: dict(doc) for doc in PENDING_ORDERS}
        before_fills["orders"]["o3"] = expected_orders()["o3"]
        assert await wait_for(mongo_db, before_fills) == before_fills
        stash = {doc["_id"]: doc["fees"] async for doc in mongo_db["projection_fill_fees"].find()}
        assert stash == {"o1|PETR4-T1": "1.16", "o1|PETR4-T2": "2.31", "o2|PETR4-T3": "1.17"}

        await publish_session(isolated, topics=[topics.order_events.name], bad_record=False)
        assert await wait_for(mongo_db, expected()) == expected()
        await wait_until(lambda: first.stats.records == RECORDS, "every record read")
    finally:
        stats = await first.finish()
    # 13 ledger entries; order events of o1-o5: 3 + 2 + 1 (o4) + 2 (o5) + the refusal of o3
    assert (stats.applied, stats.duplicates, stats.dead_letters) == (13 + 9, 0, 1)
    # entries 5 and 6 of a1 waited for 4; x1-x3's 6 events, the lost cancel, the acceptance
    # and the CancelRequestRejected decisions have nothing to project
    assert (stats.held_total, stats.gaps_held, stats.ignored) == (2, 0, 9)

    orders_indexes = await mongo_db["orders"].index_information()
    positions_indexes = await mongo_db["positions"].index_information()
    assert orders_indexes["orders_by_account_created"]["key"] == [
        ("accountId", 1),
        ("createdAt", -1),
    ]
    assert positions_indexes["positions_by_account"]["key"] == [("accountId", 1)]

    letters = await read_dead_letters(isolated)
    assert [(d.source, d.reason, d.raw_payload()) for d in letters] == [
        (topics.ledger_events.name, "SCHEMA_INVALID", BAD_RECORD)
    ]
    assert "amount" in letters[0].fields

    # Everything again, from offset 0, by a new consumer group: nothing changes.
    replay_settings = isolated.model_copy(
        update={"projections_group_id": f"{isolated.projections_group_id}-replay"}
    )
    replay = Running(replay_settings)
    try:
        await wait_until(lambda: replay.stats.records == RECORDS, "every record read again")
    finally:
        replayed = await replay.finish()
    assert await snapshot(mongo_db) == expected()
    assert replayed.applied == 0
    # 13 ledger entries and the 8 order events applied before are duplicates; the refusal of
    # an order that is no longer PENDING joins the ignored
    assert (replayed.duplicates, replayed.ignored) == (13 + 8, 9 + 1)


async def test_fees_follow_fills_and_the_same_records_published_twice_change_nothing(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    topics = catalog(isolated)
    # The exchange's events first: fills are projected with fees null until the ledger's.
    await publish_session(isolated, topics=[topics.order_events.name], bad_record=False)
    running = Running(isolated)
    try:
        without_fees = {"orders": expected_orders(), "accounts": {}, "positions": {}}
        without_fees["orders"]["o3"] = {doc["_id"]: doc for doc in PENDING_ORDERS}["o3"]
        for order_id in ("o1", "o2"):
            for fill in without_fees["orders"][order_id]["fills"]:
                fill["fees"] = None
        assert await wait_for(mongo_db, without_fees) == without_fees

        await publish_session(
            isolated, topics=[topics.ledger_events.name, topics.account_events.name]
        )
        assert await wait_for(mongo_db, expected()) == expected()
        # The whole log again (a producer that retried everything): nothing changes.
        await publish_session(isolated, bad_record=False)
        await wait_until(lambda: running.stats.records == 2 * RECORDS - 1, "both copies read")
    finally:
        stats = await running.finish()
    assert await snapshot(mongo_db) == expected()
    assert (stats.applied, stats.duplicates) == (13 + 9, 13 + 8)


async def test_killed_mid_stream_and_restarted_ends_in_the_same_state(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    small = isolated.model_copy(update={"projections_batch_max": 3})
    session = list(records(small))
    await publish_session(small, slice(0, len(session) // 2), bad_record=False)
    first = Running(small)
    try:
        await wait_until(lambda: first.stats.batches >= 2, "two batches written")
    finally:
        await first.crash()  # mid-stream: whatever was not committed is read again
    await publish_session(small, slice(len(session) // 2, None))
    second = Running(small)
    try:
        assert await wait_for(mongo_db, expected()) == expected()
    finally:
        await second.finish()


async def read_dead_letters(settings: Settings) -> list[Any]:
    from aiokafka import TopicPartition

    from brokerflow.kafka_io import consumer

    topic = catalog(settings).dead_letters.name
    async with consumer(settings) as reader:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        found = []
        async with asyncio.timeout(WAIT_S):
            while await reader.position(tp) < end:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(decode(r.value) for r in batch)
        return found


async def test_a_gap_is_held_across_a_restart_until_the_missing_entry_arrives(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    """a1's entry 4 is missing: 5-10 wait in memory, and the committed offset stays before them,
    so a projector restarted meanwhile reads them again instead of losing them."""
    session = list(records(isolated))
    missing = [r for r in session if getattr(r[2], "entry_id", None) == "a1:4"]
    assert len(missing) == 1
    async with producer(isolated) as client:
        for topic in dict.fromkeys(t for t, _, _ in session):
            await publish(
                client,
                topic,
                [(k, m) for t, k, m in session if t == topic and (t, k, m) not in missing],
            )
    first = Running(isolated)
    try:
        await wait_until(lambda: first.stats.records == len(session) - 1, "all but one read")
        accounts = {doc["_id"]: doc async for doc in mongo_db["accounts"].find()}
        assert (accounts["a1"]["sequence"], accounts["a2"]["sequence"]) == (3, 1)
        assert (first.stats.gaps_held, first.stats.held_total) == (6, 6)
    finally:
        await first.finish()

    second = Running(isolated)
    try:
        # The held entries are read again after the restart, and wait again.
        await wait_until(lambda: second.stats.gaps_held == 6, "entries 5-10 held again")
        async with producer(isolated) as client:
            await publish(client, missing[0][0], [(missing[0][1], missing[0][2])])
        assert await wait_for(mongo_db, expected()) == expected()
    finally:
        stats = await second.finish()
    assert stats.gaps_held == 0
