"""Two projector processes writing the same order, interleaved on purpose, on the real MongoDB
wire server.

Partitions of different topics can sit with different projector processes: one projects an
order's exchange events while another projects its account's ledger (the fees), and a rebalance
can briefly give one partition to two. The other writer here is a second :class:`Projector`,
let in right after the first one has read the order and before it writes (the store is the
real one, with a hook after a read).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.metrics import metric_value
from brokerflow.projections import FILL_FEES, ORDERS, Projector, ReadModelStore
from brokerflow.schemas import (
    AccountOpened,
    FillSettled,
    Message,
    OrderFilled,
    OrderPartiallyFilled,
    Side,
)
from brokerflow.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)


class InterleavedStore(ReadModelStore):
    """The real store; right after its first read of ``collection``, ``meanwhile`` runs."""

    def __init__(
        self, db: AsyncDatabase, collection: str, meanwhile: Callable[[], Awaitable[Any]]
    ) -> None:
        super().__init__(db)
        self.collection = collection
        self.meanwhile: Callable[[], Awaitable[Any]] | None = meanwhile

    async def find(self, collection: str, ids: Iterable[str]) -> dict[str, Any]:
        found = await super().find(collection, ids)
        if collection == self.collection and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return found


def record(message: Message, key: str, offset: int) -> ConsumerRecord:
    value = message.to_json_bytes()
    return ConsumerRecord(
        topic="test",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=(),
    )


def open_order() -> dict[str, Any]:
    """o1 as projected up to the exchange's sequence 3: BUY 300 PETR4 @ 38.60, OPEN."""
    return {
        "_id": "o1",
        "orderId": "o1",
        "userId": "u1",
        "accountId": "a1",
        "symbol": "PETR4",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "300",
        "price": "38.60",
        "status": "OPEN",
        "filledQuantity": "0",
        "leavesQuantity": "300",
        "averagePrice": None,
        "fills": [],
        "rejectReason": None,
        "rejectMessage": None,
        "idempotencyKey": None,
        "createdAt": "2026-06-25T13:00:00.000000Z",
        "updatedAt": "2026-06-25T13:00:01.000000Z",
        "lastSequence": 3,
    }


def t1(seq: int = 4) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=seq,
        filled_quantity=Decimal(100),
        leaves_quantity=Decimal(200),
        trade_id="PETR4-T1",
        last_price=Decimal("38.52"),
        last_quantity=Decimal(100),
        event_time=T0 + timedelta(seconds=2),
    )


def t2() -> OrderFilled:
    return OrderFilled(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=5,
        filled_quantity=Decimal(300),
        leaves_quantity=Decimal(0),
        trade_id="PETR4-T2",
        last_price=Decimal("38.56"),
        last_quantity=Decimal(200),
        event_time=T0 + timedelta(seconds=3),
    )


FILL_1 = {
    "executionId": "PETR4-T1",
    "price": "38.52",
    "quantity": "100",
    "fees": None,
    "time": "2026-06-25T13:00:02.000000Z",
}
FILL_2 = {
    "executionId": "PETR4-T2",
    "price": "38.56",
    "quantity": "200",
    "fees": None,
    "time": "2026-06-25T13:00:03.000000Z",
}


@pytest.fixture
def isolated(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> Settings:
    return settings.model_copy(
        update={"topic_prefix": f"projc-{unique}.", "mongo_database": mongo_db.name}
    )


async def test_an_order_another_projector_moved_on_is_read_and_folded_again(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    await mongo_db[ORDERS].insert_one(open_order())
    other = Projector(isolated, ReadModelStore(mongo_db))
    # The other process projects fill T1 (sequence 4) after this one read the order at 3.
    store = InterleavedStore(mongo_db, ORDERS, lambda: other.apply([record(t1(), "PETR4", 4)]))
    mine = Projector(isolated, store)

    await mine.apply([record(t1(), "PETR4", 4), record(t2(), "PETR4", 5)])

    stored = await mongo_db[ORDERS].find_one({"_id": "o1"})
    # (38.52 x 100 + 38.56 x 200) / 300 = 38.54666667; T1 once, not twice
    assert stored == {
        **open_order(),
        "status": "FILLED",
        "filledQuantity": "300",
        "leavesQuantity": "0",
        "averagePrice": "38.54666667",
        "fills": [FILL_1, FILL_2],
        "updatedAt": "2026-06-25T13:00:03.000000Z",
        "lastSequence": 5,
    }
    assert (other.stats.applied, mine.stats.conflicts) == (1, 1)


def settlement() -> list[ConsumerRecord]:
    opened = AccountOpened(
        account_id="a1", sequence=0, entry_id="a1:0", currency="BRL", user_id="u1", event_time=T0
    )
    settled = FillSettled(
        account_id="a1",
        sequence=1,
        entry_id="a1:1",
        currency="BRL",
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
        event_time=T0 + timedelta(seconds=2),
    )
    return [record(opened, "a1", 0), record(settled, "a1", 1)]


async def test_fees_settled_while_the_fill_is_being_written_are_not_lost(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    """The orders projector reads o1 and the stashed fees (none); the ledger projector then
    reads o1 (no fill yet), stashes the fees and finishes; the fill is written without fees.
    The orders projector looks at the stash again after writing."""
    await mongo_db[ORDERS].insert_one(open_order())
    ledger = Projector(isolated, ReadModelStore(mongo_db))
    store = InterleavedStore(mongo_db, FILL_FEES, lambda: ledger.apply(settlement()))
    orders = Projector(isolated, store)

    await orders.apply([record(t1(), "PETR4", 4)])

    stored = await mongo_db[ORDERS].find_one({"_id": "o1"})
    assert stored is not None
    assert stored["fills"] == [{**FILL_1, "fees": "1.16"}]
    assert (stored["status"], stored["lastSequence"]) == ("PARTIALLY_FILLED", 4)


async def test_a_fill_written_while_its_fees_are_being_stashed_gets_them(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    """The other way round: the ledger projector reads o1 (no fill); the orders projector then
    writes the fill (no fees stashed yet) and finishes; the fees are stashed. The ledger
    projector looks at the order again after stashing."""
    await mongo_db[ORDERS].insert_one(open_order())
    orders = Projector(isolated, ReadModelStore(mongo_db))
    store = InterleavedStore(mongo_db, ORDERS, lambda: orders.apply([record(t1(), "PETR4", 4)]))
    ledger = Projector(isolated, store)

    await ledger.apply(settlement())

    stored = await mongo_db[ORDERS].find_one({"_id": "o1"})
    assert stored is not None
    assert stored["fills"] == [{**FILL_1, "fees": "1.16"}]
    stash = await mongo_db[FILL_FEES].find_one({"_id": "o1|PETR4-T1"})
    assert stash is not None
    assert stash["fees"] == "1.16"


def projected(outcome: str) -> float:
    return metric_value("projector_events_total", outcome=outcome)


async def test_the_metrics_count_what_became_of_each_record(
    isolated: Settings, mongo_db: AsyncDatabase
) -> None:
    await mongo_db[ORDERS].insert_one(open_order())
    projector = Projector(isolated, ReadModelStore(mongo_db))
    outcomes = ("applied", "duplicate", "ignored")
    before = [projected(o) for o in outcomes]
    batches = metric_value("projector_batch_duration_seconds_count")

    await projector.apply([record(t1(), "PETR4", 4), record(t2(), "PETR4", 5)])
    await projector.apply([record(t1(), "PETR4", 4)])  # redelivered after a crash

    assert [projected(o) - b for o, b in zip(outcomes, before, strict=True)] == [2, 1, 0]
    assert metric_value("projector_batch_duration_seconds_count") - batches == 2
