"""Price alerts' pure core, and the service's firing order with in-memory stand-ins for MongoDB
and Kafka (the real ones: tests/integration/test_alerts_and_reconciler.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from brokerflow.alerts.core import (
    Alert,
    AlertBook,
    Print,
    alert_document,
    alert_from_command,
    alert_from_document,
    notification_for,
    print_of,
)
from brokerflow.alerts.service import AlertsService
from brokerflow.schemas import decode
from brokerflow.schemas.alerts import AlertCancelled, AlertCreated
from brokerflow.schemas.market import Trade
from brokerflow.schemas.notifications import AlertCondition, PriceAlertTriggered
from brokerflow.settings import Settings

T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)
ABOVE, BELOW = AlertCondition.PRICE_AT_OR_ABOVE, AlertCondition.PRICE_AT_OR_BELOW


def alert(alert_id: str, condition: AlertCondition, threshold: str, symbol: str = "PETR4") -> Alert:
    return Alert(alert_id, "u-1", "acc-1", symbol, condition, Decimal(threshold), T0)


def seen(price: str, seconds: float = 1, symbol: str = "PETR4") -> Print:
    return Print(symbol, Decimal(price), T0 + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("condition", "threshold", "price", "met"),
    [
        (ABOVE, "40.00", "39.99", False),
        (ABOVE, "40.00", "40.00", True),
        (ABOVE, "40.00", "40.01", True),
        (BELOW, "35.00", "35.01", False),
        (BELOW, "35.00", "35.00", True),
        (BELOW, "35.00", "34.99", True),
    ],
)
def test_at_or_above_and_at_or_below(
    condition: AlertCondition, threshold: str, price: str, met: bool
) -> None:
    assert alert("a", condition, threshold).met_by(Decimal(price), T0) is met


def test_a_trade_from_before_the_alert_never_fires_it() -> None:
    assert not alert("a", ABOVE, "40").met_by(Decimal("41"), T0 - timedelta(microseconds=1))


def test_the_book_answers_by_symbol_oldest_first_and_forgets_what_is_removed() -> None:
    later = Alert("b", "u-2", None, "PETR4", ABOVE, Decimal("39"), T0 + timedelta(seconds=1))
    book = AlertBook([later, alert("a", ABOVE, "40"), alert("c", ABOVE, "1", symbol="VALE3")])
    assert [a.alert_id for a in book.met_by(seen("40.50", 2))] == ["a", "b"]
    assert book.met_by(seen("38", 2)) == []
    assert book.remove("a") is not None
    assert [a.alert_id for a in book.met_by(seen("40.50", 2))] == ["b"]
    assert book.remove("a") is None
    assert len(book) == 2


def test_the_notification_is_keyed_by_the_alert() -> None:
    fired = notification_for(alert("alr-1", BELOW, "35.00"), seen("34.90"))
    assert isinstance(fired, PriceAlertTriggered)
    assert (fired.notification_id, fired.alert_id, fired.user_id) == ("alr-1", "alr-1", "u-1")
    assert (fired.price, fired.threshold, fired.event_time) == (
        Decimal("34.90"),
        Decimal("35.00"),
        T0 + timedelta(seconds=1),
    )
    assert fired.message == "PETR4 traded at 34.90 (your alert: at or below 35.00)"


def test_document_and_command_describe_the_same_alert() -> None:
    command = AlertCreated(
        alert_id="alr-1",
        user_id="u-1",
        account_id="acc-1",
        symbol="petr4",
        condition=ABOVE,
        threshold="40.00",
        event_time=T0,
    )
    document = alert_document(command)
    assert document["status"] == "ACTIVE"
    assert document["threshold"] == "40.00"
    assert (
        alert_from_document(document)
        == alert_from_command(command)
        == alert("alr-1", ABOVE, "40.00")
    )
    assert alert_from_document({"_id": "x"}) is None


def test_prices_come_from_trades_only() -> None:
    trade = Trade(
        venue="BINANCE",
        symbol="BTCUSDT",
        trade_id="1",
        price="94000.10",
        quantity="0.1",
        event_time=T0,
        receive_time=T0,
    )
    assert print_of(trade) == Print("BTCUSDT", Decimal("94000.10"), T0)
    assert print_of(AlertCancelled(alert_id="a", user_id="u", symbol="X", event_time=T0)) is None


# --- the service's order of work, with stand-ins ------------------------------------------------


@dataclass
class FakeStore:
    documents: dict[str, str] = field(default_factory=dict)  # alert id -> status
    alerts: dict[str, Alert] = field(default_factory=dict)
    fail_marking: bool = False
    log: list[str] = field(default_factory=list)

    async def active(self) -> list[Alert]:
        return [self.alerts[i] for i, status in self.documents.items() if status == "ACTIVE"]

    async def still_active(self, ids: Any) -> set[str]:
        return {i for i in ids if self.documents.get(i) == "ACTIVE"}

    async def mark_triggered(self, alert: Alert, seen: Print) -> bool:
        if self.fail_marking:
            raise OSError("MongoDB went away")
        self.log.append(f"mark {alert.alert_id}")
        won = self.documents.get(alert.alert_id) == "ACTIVE"
        self.documents[alert.alert_id] = "TRIGGERED"
        return won


@dataclass
class FakeProducer:
    log: list[str]
    sent: list[PriceAlertTriggered] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        message = decode(value)
        assert isinstance(message, PriceAlertTriggered)
        assert key == message.user_id.encode()
        self.sent.append(message)
        self.log.append(f"send {message.notification_id}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def record(topic: str, message: Any, offset: int = 0) -> ConsumerRecord:
    value = message.to_json_bytes() if hasattr(message, "to_json_bytes") else message
    key = getattr(message, "symbol", "PETR4").encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), [])


def service_with(store: FakeStore) -> tuple[AlertsService, FakeProducer]:
    writer = FakeProducer(store.log)
    service = AlertsService(Settings(_env_file=None), store, writer, None)  # type: ignore[arg-type]
    return service, writer


def trade(price: str, seconds: float = 1) -> Trade:
    when = T0 + timedelta(seconds=seconds)
    return Trade(
        venue="BINANCE",
        symbol="PETR4",
        trade_id=f"t{seconds}",
        price=price,
        quantity="1",
        event_time=when,
        receive_time=when,
    )


async def test_the_notification_goes_out_before_the_alert_is_marked_and_only_once() -> None:
    store = FakeStore({"a": "ACTIVE"}, {"a": alert("a", ABOVE, "40")})
    service, writer = service_with(store)
    topic = service.price_topics[0]
    await service.apply([record(topic, trade("40.10", 1)), record(topic, trade("40.20", 2), 1)])
    await service.apply([record(topic, trade("41", 3), 2)])
    assert store.log == ["send a", "mark a"]
    assert [n.price for n in writer.sent] == [Decimal("40.10")]
    assert service.stats.triggered == 1


async def test_a_crash_before_marking_repeats_the_notification_never_loses_it() -> None:
    store = FakeStore({"a": "ACTIVE"}, {"a": alert("a", ABOVE, "40")}, fail_marking=True)
    service, writer = service_with(store)
    topic = service.price_topics[0]
    with pytest.raises(OSError, match="MongoDB went away"):
        await service.apply([record(topic, trade("40.10"))])
    store.fail_marking = False
    restarted, again = service_with(store)  # a new process re-reads the uncommitted batch
    await restarted.apply([record(topic, trade("40.10"))])
    assert [n.notification_id for n in writer.sent + again.sent] == ["a", "a"]
    assert store.documents["a"] == "TRIGGERED"


async def test_cancelled_and_spent_alerts_never_fire_and_bad_records_are_dead_letters() -> None:
    store = FakeStore(
        {"a": "ACTIVE", "b": "ACTIVE"}, {"a": alert("a", BELOW, "35"), "b": alert("b", BELOW, "36")}
    )
    service, writer = service_with(store)
    await service.apply([])  # loads both
    store.documents["a"] = "CANCELLED"  # the API cancelled it; its command is not here yet
    revived = AlertCreated(
        alert_id="b",
        user_id="u-1",
        symbol="PETR4",
        condition=BELOW,
        threshold="36",
        event_time=T0,
    )
    cancelled = AlertCancelled(alert_id="b", user_id="u-1", symbol="PETR4", event_time=T0)
    letters = await service.apply(
        [
            record(service.commands_topic, cancelled),
            record(service.price_topics[0], b'{"type": "Trade"}', 1),
            record(service.commands_topic, trade("30"), 2),  # a price on the commands topic
            record(service.price_topics[0], trade("34")),
        ]
    )
    assert writer.sent == []
    assert service.stats.stale == 1  # a: met, but its document said CANCELLED
    assert [letter.reason for letter in letters] == ["SCHEMA_INVALID", "UNKNOWN_MESSAGE"]
    store.documents["b"] = "CANCELLED"
    await service.apply([record(service.commands_topic, revived)])  # a replayed command
    assert "b" not in service.book
