"""Simulated participants against the real exchange worker: a maker's ladder around the market's
price, a user's order filling through it level by level, the gaps refilled, and a restart that
cancels what the previous run left on the book."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokerflow.kafka_io import producer, publish
from brokerflow.participants import run_participants
from brokerflow.schemas import decode
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.market import BestBidAsk, Quote
from brokerflow.schemas.orders import OrderType, PlaceOrder, Side, TimeInForce
from brokerflow.settings import Settings

from .api_harness import delete_redis_keys
from .exchange_workers import isolated_exchange, stop
from .ingest_namespace import read_all
from .test_broker_end_to_end import eventually

pytestmark = pytest.mark.integration


async def _events(settings: Settings) -> list[Any]:
    topic = f"{settings.topic_prefix}{settings.order_events_topic}"
    return [decode(r.value) for r in await read_all(settings, topic, timeout_s=30)]


def _accepted(events: list[Any], prefix: str, symbol: str) -> dict[str, tuple[str, str, str]]:
    return {
        e.order_id: (e.side.value, str(e.price), str(e.quantity))
        for e in events
        if e.type == "OrderAccepted" and e.order_id.startswith(prefix) and e.symbol == symbol
    }


async def test_a_users_order_fills_through_the_makers_ladder_which_refills_and_restarts_clean(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    exchange = await asyncio.to_thread(
        isolated_exchange, settings, unique, tmp_path, "sim", EXCHANGE_RULES_PATH=""
    )
    worker = exchange.start_worker("w1")
    isolated = exchange.settings.model_copy(
        update={
            "participants_symbols": ["PETR4", "BTCUSDT"],
            "participants_taker_orders_per_min": 0,
            "participants_refresh_s": 1.0,
            "api_redis_prefix": f"test-{unique}:api:",
        }
    )
    topic = isolated.topic
    stop_first = asyncio.Event()
    first = asyncio.create_task(run_participants(isolated, stop_first))
    now = datetime.now(UTC)
    try:
        await asyncio.sleep(3)  # the service tails the topics from their ends
        quote = example_of(Quote).model_copy(
            update={"symbol": "PETR4", "last_price": Decimal("38.00"), "event_time": now}
        )
        ticker = example_of(BestBidAsk).model_copy(
            update={
                "symbol": "BTCUSDT",
                "bid_price": Decimal("94000.00"),
                "ask_price": Decimal("94000.02"),
                "event_time": now,
            }
        )
        async with producer(isolated) as writer:
            await publish(writer, topic(isolated.market_quotes_topic), [("PETR4", quote)])
            await publish(writer, topic(isolated.market_book_topic), [("BTCUSDT", ticker)])

            async def ladders() -> list[Any]:
                events = await _events(isolated)
                petr = _accepted(events, "sim-mm-", "PETR4")
                btc = _accepted(events, "sim-mm-", "BTCUSDT")
                return events if len(petr) == 6 and len(btc) == 6 else []

            events = await eventually("both ladders on the book", ladders, timeout_s=60)
            # 5, 10, 15 bps around 38.00, rounded outward to the tick; 5,000 BRL a level.
            assert sorted(_accepted(events, "sim-mm-", "PETR4").values()) == [
                ("BUY", "37.94", "131"),
                ("BUY", "37.96", "131"),
                ("BUY", "37.98", "131"),
                ("SELL", "38.02", "131"),
                ("SELL", "38.04", "131"),
                ("SELL", "38.06", "131"),
            ]
            # Around 94,000.01: 5,000 USDT is 0.05319 BTC (lot 0.00001).
            assert sorted(_accepted(events, "sim-mm-", "BTCUSDT").values())[:2] == [
                ("BUY", "93859.00", "0.05319"),
                ("BUY", "93906.00", "0.05319"),
            ]

            # A user buys 300 at market: it takes the asks level by level.
            user = PlaceOrder(
                order_id=f"user-{unique}",
                account_id="acc-user",
                symbol="PETR4",
                side=Side.BUY,
                order_type=OrderType.MARKET,
                time_in_force=TimeInForce.IOC,
                quantity=Decimal(300),
                event_time=datetime.now(UTC),
            )
            await publish(writer, topic("order-commands-v1"), [("PETR4", user)])

            async def user_done() -> list[Any]:
                events = await _events(isolated)
                mine = [e for e in events if getattr(e, "order_id", "") == user.order_id]
                return events if any(e.type == "OrderFilled" for e in mine) else []

            events = await eventually("the user's order filled", user_done, timeout_s=60)
            fills = [
                (e.type, str(e.last_quantity), str(e.last_price))
                for e in events
                if getattr(e, "order_id", "") == user.order_id and e.type.endswith("Filled")
            ]
            assert fills == [
                ("OrderPartiallyFilled", "131", "38.02"),
                ("OrderPartiallyFilled", "131", "38.04"),
                ("OrderFilled", "38", "38.06"),
            ]

            # The broker hears of its customer's order only: members' orders are the exchange's.
            reports = await read_all(isolated, topic("execution-reports-v1"), timeout_s=30)
            keys = {r.key.decode() for r in reports}
            assert "acc-user" in keys
            assert not [k for k in keys if k.startswith("sim-")]

            # The two emptied levels are quoted again (new orders, same prices).
            async def refilled() -> list[Any]:
                events = await _events(isolated)
                asks = [v for v in _accepted(events, "sim-mm-", "PETR4").values() if v[0] == "SELL"]
                return events if len(asks) == 5 else []

            events = await eventually("the asks refilled", refilled, timeout_s=30)
            asks = sorted(
                v for v in _accepted(events, "sim-mm-", "PETR4").values() if v[0] == "SELL"
            )
            assert asks == [
                ("SELL", "38.02", "131"),
                ("SELL", "38.02", "131"),
                ("SELL", "38.04", "131"),
                ("SELL", "38.04", "131"),
                ("SELL", "38.06", "131"),
            ]

        # Stopped (as a crash would leave it: its orders on the book) and started again: the
        # new run cancels everything the last one had resting, then quotes afresh.
        stop_first.set()
        await asyncio.wait_for(first, 30)
        before = {
            e.order_id
            for e in await _events(isolated)
            if e.type == "OrderAccepted" and e.order_id.startswith("sim-mm-")
        }
        filled = {
            e.order_id
            for e in await _events(isolated)
            if e.type == "OrderFilled" and e.order_id.startswith("sim-mm-")
        }
        stop_second = asyncio.Event()
        second = asyncio.create_task(run_participants(isolated, stop_second))

        async def all_cancelled() -> bool:
            cancelled = {e.order_id for e in await _events(isolated) if e.type == "OrderCancelled"}
            return before - filled <= cancelled

        await eventually("the last run's orders cancelled", all_cancelled, timeout_s=60)
        stop_second.set()
        await asyncio.wait_for(second, 30)
        assert len(before - filled) == 12 - 2 + 2  # two asks filled, two placed again
    except BaseException:
        print(exchange.log("w1")[-4000:])
        raise
    finally:
        stop_first.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(first, 10)
        with contextlib.suppress(Exception):
            stop(worker)
        await delete_redis_keys(settings, unique)
