"""Price alerts and the reconciler on the real stack.

Alerts: the real API (in-process) and the real alerts service on the real Kafka and MongoDB,
trades published as the ingest flow and the exchange publish them. Reconciler: a real Faust
worker (accounts agent and exchange), the API and the projector, then the reconciler's passes
run one at a time so each assertion is about one pass.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.alerts import AlertStats, run_alerts
from brokerflow.api.orders import new_order_document
from brokerflow.exchange.io import read_topic
from brokerflow.kafka_io import producer, publish
from brokerflow.metrics import metric_value
from brokerflow.reconciler import Reconciler
from brokerflow.reconciler.compare import Discrepancy, Field, Source
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import RequestOrder
from brokerflow.schemas.market import Trade
from brokerflow.schemas.notifications import PriceAlertTriggered
from brokerflow.schemas.trades import TradeExecuted
from brokerflow.settings import Settings
from brokerflow.topics import catalog

from .api_harness import User, api_namespace, funded_user, live_system, sign_up, user_with_shares
from .exchange_workers import stop
from .test_broker_end_to_end import eventually, get

pytestmark = pytest.mark.integration


# --- price alerts ------------------------------------------------------------------------------


def market_trade(symbol: str, price: str, n: int) -> Trade:
    now = datetime.now(UTC)
    return Trade(
        venue="BINANCE",
        symbol=symbol,
        trade_id=f"t{n}",
        price=price,
        quantity="1",
        event_time=now,
        receive_time=now,
    )


def exchange_trade(symbol: str, price: str, n: int) -> TradeExecuted:
    return TradeExecuted(
        trade_id=f"x{n}",
        symbol=symbol,
        sequence=n,
        price=price,
        quantity="100",
        aggressor_side="BUY",
        taker_order_id=f"b{n}",
        maker_order_id=f"s{n}",
        buy_order_id=f"b{n}",
        sell_order_id=f"s{n}",
        event_time=datetime.now(UTC),
    )


async def set_alert(api: Any, user: User, symbol: str, condition: str, threshold: str) -> str:
    answer = await api.client.post(
        "/api/v1/alerts",
        json={"symbol": symbol, "condition": condition, "threshold": threshold},
        headers=user.auth,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["status"], body["symbol"], body["threshold"]) == ("ACTIVE", symbol, threshold)
    return str(body["alertId"])


class AlertsRun:
    """The alerts service as a task, stopped and started again at will."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = AlertStats()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[AlertStats] | None = None

    def start(self) -> None:
        self.stats, self.stop = AlertStats(), asyncio.Event()
        self.task = asyncio.create_task(run_alerts(self.settings, self.stop, stats=self.stats))

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)

    async def prices_seen(self, count: int) -> None:
        async def probe() -> bool:
            assert self.task is not None
            assert not self.task.done(), "the service stopped"
            return self.stats.prices >= count

        await eventually(f"{count} prices seen by the alerts service", probe)


async def send_prices(settings: Settings, trades: list[Trade | TradeExecuted]) -> None:
    topics = catalog(settings)
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        for trade in trades:
            topic = topics.market_trades if isinstance(trade, Trade) else topics.trade_executions
            await publish(client, topic.name, [(trade.symbol, trade)])


async def notifications(settings: Settings) -> list[tuple[str, PriceAlertTriggered]]:
    records = await read_topic(settings, catalog(settings).notifications.name, timeout_s=10)
    found = []
    for record in records:
        message = decode(record.value)
        assert isinstance(message, PriceAlertTriggered)
        assert record.key is not None
        found.append((record.key.decode(), message))
    return found


async def test_alerts_fire_once_survive_a_restart_and_stay_private(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    async with api_namespace(settings, unique, mongo_db, alerts_group_id=f"alerts-{unique}") as api:
        service = AlertsRun(api.settings)
        service.start()
        try:
            ana = await funded_user(api, "ana")
            bruno = await sign_up(api.client, "bruno")
            above = await set_alert(api, ana, "PETR4", "PRICE_AT_OR_ABOVE", "40.00")
            below = await set_alert(api, ana, "PETR4", "PRICE_AT_OR_BELOW", "35.00")
            doomed = await set_alert(api, ana, "PETR4", "PRICE_AT_OR_ABOVE", "50.00")
            btc = await set_alert(api, bruno, "BTCUSDT", "PRICE_AT_OR_BELOW", "90000")

            # Another user's alert is not there for Bruno; an unknown symbol names the field.
            assert (
                await api.client.get(f"/api/v1/alerts/{above}", headers=bruno.auth)
            ).status_code == 404
            stolen = await api.client.delete(f"/api/v1/alerts/{above}", headers=bruno.auth)
            assert (stolen.status_code, stolen.json()["code"]) == (404, "UNKNOWN_ALERT")
            unknown = await api.client.post(
                "/api/v1/alerts",
                json={"symbol": "NOPE3", "condition": "PRICE_AT_OR_ABOVE", "threshold": "1"},
                headers=ana.auth,
            )
            assert (unknown.status_code, unknown.json()["field"]) == (422, "symbol")
            zero = await api.client.post(
                "/api/v1/alerts",
                json={"symbol": "PETR4", "condition": "PRICE_AT_OR_ABOVE", "threshold": "0"},
                headers=ana.auth,
            )
            assert (zero.status_code, zero.json()["field"]) == (422, "threshold")

            cancelled = await api.client.delete(f"/api/v1/alerts/{doomed}", headers=ana.auth)
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "CANCELLED"

            # Two prices cross 40 (one from our exchange), one 35, none 90000 for BTCUSDT.
            await send_prices(
                api.settings,
                [
                    exchange_trade("PETR4", "40.10", 1),
                    market_trade("PETR4", "40.50", 2),
                    market_trade("PETR4", "34.90", 3),
                    market_trade("BTCUSDT", "94000.00", 4),
                ],
            )
            await service.prices_seen(4)
            await service.halt()

            # While it is down: the cancelled alert's price, the others' again, and a new alert.
            later = await set_alert(api, bruno, "BTCUSDT", "PRICE_AT_OR_ABOVE", "95000")
            await send_prices(
                api.settings,
                [
                    market_trade("PETR4", "60.00", 5),
                    market_trade("PETR4", "33.00", 6),
                    market_trade("BTCUSDT", "95000.00", 7),
                ],
            )
            service.start()
            await service.prices_seen(3)
            await service.halt()

            sent = await notifications(api.settings)
            assert sorted((key, n.alert_id, n.price) for key, n in sent) == sorted(
                [
                    (ana.user_id, above, Decimal("40.10")),
                    (ana.user_id, below, Decimal("34.90")),
                    (bruno.user_id, later, Decimal("95000.00")),
                ]
            )
            assert all(n.notification_id == n.alert_id for _, n in sent)

            listed = (await get(api.client, ana, "/api/v1/alerts"))["alerts"]
            assert {a["alertId"]: (a["status"], a["triggeredPrice"]) for a in listed} == {
                above: ("TRIGGERED", "40.10"),
                below: ("TRIGGERED", "34.90"),
                doomed: ("CANCELLED", None),
            }
            mine = (await get(api.client, bruno, "/api/v1/alerts?status=ACTIVE"))["alerts"]
            assert [a["alertId"] for a in mine] == [btc]
            spent = await api.client.delete(f"/api/v1/alerts/{above}", headers=ana.auth)
            assert (spent.status_code, spent.json()["code"]) == (409, "ALERT_NOT_ACTIVE")
        finally:
            await service.halt()


# --- the reconciler ----------------------------------------------------------------------------


async def test_reconciler_resends_stuck_requests_and_names_tampered_fields(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    async with live_system(
        settings, unique, mongo_db, tmp_path, "rec", reconciler_grace_s=0
    ) as system:
        api = system.api
        client = api.client
        ana = await funded_user(api, "ana", amount="10000.00")
        bruno = await user_with_shares(api, "bruno")

        # An order the API wrote but whose request never reached Kafka, 2 minutes ago.
        stuck = RequestOrder(
            request_id="stuck-1",
            order_id="stuck-1",
            account_id=ana.account_id,
            symbol="PETR4",
            side="BUY",
            order_type="LIMIT",
            quantity="100",
            price="38.00",
            event_time=datetime.now(UTC) - timedelta(minutes=2),
        )
        await api.db["orders"].insert_one(new_order_document(stuck, ana.user_id))
        async with producer(api.settings, enable_idempotence=True, acks="all") as writer:
            reconciler = Reconciler(api.settings, api.db, writer)
            before = metric_value("reconciler_republished_total", command="RequestOrder")
            resent = await reconciler.orders_pass(datetime.now(UTC))
            assert (resent.orders, resent.cancels) == (["stuck-1"], [])
            assert (
                metric_value("reconciler_republished_total", command="RequestOrder") - before == 1
            )
            # Decided by the real accounts agent (funds held: 100 x 38.00 + 1.14 fee), then
            # accepted by the exchange.
            await eventually(
                "the stuck order OPEN", lambda: _status(client, ana, "stuck-1", "OPEN")
            )
            assert (await reconciler.orders_pass(datetime.now(UTC))).orders == []

            # A cancel the API accepted 2 minutes ago and that never got through.
            await api.db["orders"].update_one(
                {"_id": "stuck-1"},
                {
                    "$set": {
                        "cancelRequestedAt": "2000-01-01T00:00:00.000000Z",
                        "cancelRequestId": "cancel-stuck-1",
                    }
                },
            )
            resent = await reconciler.orders_pass(datetime.now(UTC))
            assert (resent.orders, resent.cancels) == ([], ["stuck-1"])
            await eventually(
                "the stuck order CANCELLED",
                lambda: _status(client, ana, "stuck-1", "CANCELLED"),
            )

            async def projected() -> bool:
                account = await get(client, ana, "/api/v1/account")
                return Decimal(account["balances"]["BRL"]["held"]) == 0

            await eventually("Ana's hold released in the read model", projected)

            # Bruno sells to Ana: his proceeds settle D+2 (B3). Nobody acts after that; the
            # daily sweep's SettleDue, on a date past it, turns them into settled cash.
            for user, side in ((bruno, "SELL"), (ana, "BUY")):
                placed = await client.post(
                    "/api/v1/orders",
                    json={
                        "symbol": "PETR4",
                        "side": side,
                        "type": "LIMIT",
                        "quantity": "100",
                        "price": "38.00",
                    },
                    headers=user.auth,
                )
                assert placed.status_code == 202, placed.text
                assert placed.json()["status"] == "ACCEPTED"

            async def brl(user: User) -> dict[str, Decimal]:
                account = await get(client, user, "/api/v1/account")
                return {k: Decimal(v) for k, v in account["balances"].get("BRL", {}).items()}

            async def proceeds_unsettled() -> bool:
                return (await brl(bruno)).get("unsettledCash", Decimal(0)) > 0

            await eventually("Bruno's proceeds unsettled", proceeds_unsettled)
            await eventually("Ana's buy filled", lambda: _held_is_zero(client, ana))
            before = await brl(bruno)
            assert await reconciler.settlements_pass(datetime.now(UTC)) == [bruno.account_id]
            swept = await reconciler.settlements_pass(datetime.now(UTC) + timedelta(days=7))
            assert swept == [bruno.account_id]

            async def settled() -> bool:
                now = await brl(bruno)
                return now["unsettledCash"] == 0 and now["cash"] == (
                    before["cash"] + before["unsettledCash"]
                )

            await eventually("Bruno's proceeds settled by the sweep", settled)
            assert await reconciler.settlements_pass(datetime.now(UTC)) == []
            clean = await reconciler.balances_pass(datetime.now(UTC))
            assert clean.discrepancies == []
            assert clean.accounts == 2
            assert clean.outcomes[("agent", "compared")] == 2
            assert clean.outcomes[("read_model", "compared")] == 2

            await api.db["accounts"].update_one(
                {"_id": ana.account_id}, {"$set": {"balances.BRL.cash": "9000.00"}}
            )
            await api.db["positions"].update_one(
                {"_id": f"{bruno.account_id}|PETR4"}, {"$set": {"averagePrice": "31.00"}}
            )
            tampered = await reconciler.balances_pass(datetime.now(UTC))
            assert sorted(tampered.discrepancies, key=lambda d: d.path) == [
                Discrepancy(
                    Source.READ_MODEL,
                    ana.account_id,
                    Field.CASH,
                    "balances.BRL.cash",
                    "6198.86",  # 10000.00 - 100 x 38.00 - 1.14 fees (0.03 % of 3800.00)
                    "9000.00",
                ),
                Discrepancy(
                    Source.READ_MODEL,
                    bruno.account_id,
                    Field.AVERAGE_PRICE,
                    "positions.PETR4.averagePrice",
                    "30.00",
                    "31.00",
                ),
            ]
            assert metric_value("reconciler_discrepancies", source="read_model", field="cash") == 1
            assert metric_value("reconciler_discrepancies", source="agent", field="cash") == 0
            assert metric_value("reconciler_discrepancy_count") == 2

            # An overloaded worker: requests wait in its backlog, so an order that only looks
            # stuck (PENDING for minutes) is left alone rather than queued a second time.
            assert stop(system.worker) == 0
            backlog = [
                stuck.model_copy(update={"request_id": f"q-{n}", "order_id": f"q-{n}"})
                for n in range(2)
            ]
            commands = catalog(api.settings).account_commands.name
            await publish(writer, commands, [(ana.account_id, r) for r in backlog])
            waiting = stuck.model_copy(update={"request_id": "stuck-2", "order_id": "stuck-2"})
            await api.db["orders"].insert_one(new_order_document(waiting, ana.user_id))
            republished = metric_value("reconciler_republished_total", command="RequestOrder")
            left = await reconciler.orders_pass(datetime.now(UTC))
            assert (left.orders, left.cancels, left.queued) == ([], [], 1)
            assert metric_value("reconciler_queued") == 1
            assert (
                metric_value("reconciler_republished_total", command="RequestOrder") == republished
            )


async def _held_is_zero(client: Any, user: User) -> bool:
    account = await get(client, user, "/api/v1/account")
    return Decimal(account["balances"]["BRL"]["held"]) == 0 and not account["sharesHeld"]


async def _status(client: Any, user: User, order_id: str, status: str) -> bool:
    order = await get(client, user, f"/api/v1/orders/{order_id}")
    return bool(order["status"] == status)
