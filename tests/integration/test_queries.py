"""Order queries through the real worker, API and projector: the list with its filters and
pages, each order's history, its state at instants before, between and after its events, the
same from `brokerflow audit` on the log, and nothing of another user's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.projections import run_projector
from brokerflow.projections.folds import ORDER_HISTORY
from brokerflow.settings import Settings

from .api_harness import Api, User, funded_user, live_system, user_with_shares
from .test_broker_end_to_end import eventually, get

pytestmark = pytest.mark.integration

BROKERFLOW = str(Path(sys.executable).with_name("brokerflow"))


async def place(api: Api, user: User, side: str, quantity: str, price: str) -> str:
    answer = await api.client.post(
        "/api/v1/orders",
        json={
            "symbol": "PETR4",
            "side": side,
            "type": "LIMIT",
            "quantity": quantity,
            "price": price,
        },
        headers=user.auth,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "ACCEPTED"
    return str(answer.json()["orderId"])


def ids(listed: dict[str, Any]) -> list[str]:
    return [order["orderId"] for order in listed["orders"]]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def test_list_history_state_at_and_audit(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    async with live_system(settings, unique, mongo_db, tmp_path, "qry") as system:
        api = system.api
        client = api.client
        ana = await funded_user(api, "ana", amount="20000.00")
        bruno = await user_with_shares(api, "bruno")

        bought = await place(api, ana, "BUY", "300", "38.00")
        await asyncio.sleep(0.05)  # distinct instants between the orders' events
        sold_1 = await place(api, bruno, "SELL", "100", "38.00")
        await asyncio.sleep(0.05)
        sold_2 = await place(api, bruno, "SELL", "200", "38.00")
        resting = await place(api, ana, "BUY", "100", "37.00")
        gone = await client.delete(f"/api/v1/orders/{resting}", headers=ana.auth)
        assert gone.status_code == 202, gone.text

        async def settled() -> bool:
            one = await get(client, ana, f"/api/v1/orders/{bought}")
            two = await get(client, ana, f"/api/v1/orders/{resting}")
            return one["status"] == "FILLED" and two["status"] == "CANCELLED"

        await eventually("Ana's orders projected", settled)

        # The list: newest first, each filter, the pages.
        everything = await get(client, ana, "/api/v1/orders")
        assert ids(everything) == [resting, bought]
        assert everything["pagination"] == {"total": 2, "page": 1, "pageSize": 50}
        assert ids(await get(client, ana, "/api/v1/orders?status=FILLED")) == [bought]
        assert ids(await get(client, ana, "/api/v1/orders?status=CANCELLED")) == [resting]
        assert ids(await get(client, ana, "/api/v1/orders?side=SELL")) == []
        assert ids(await get(client, ana, "/api/v1/orders?symbol=petr4")) == [resting, bought]
        assert ids(await get(client, ana, "/api/v1/orders?symbol=VALE3")) == []
        second = await get(client, ana, "/api/v1/orders?page=2&pageSize=1")
        assert (ids(second), second["pagination"]["total"]) == ([bought], 2)
        today = datetime.now(UTC).date()
        later = (today + timedelta(days=1)).isoformat()
        earlier = (today - timedelta(days=1)).isoformat()
        assert ids(await get(client, ana, f"/api/v1/orders?from={later}")) == []
        assert ids(await get(client, ana, f"/api/v1/orders?to={earlier}")) == []
        assert ids(await get(client, ana, f"/api/v1/orders?from={today}&to={today}")) == [
            resting,
            bought,
        ]
        assert ids(await get(client, bruno, "/api/v1/orders")) == [sold_2, sold_1]

        # Open orders come from Redis: an order placed and left open is listed, the filled
        # and the cancelled ones are not (the projector wrote them through as ended).
        waiting = await place(api, ana, "BUY", "50", "36.00")

        async def open_listed() -> list[str]:
            listed = ids(await get(client, ana, "/api/v1/orders?status=OPEN"))
            return listed if listed == [waiting] else []

        await eventually("Ana's open order listed", open_listed)
        redis = Redis.from_url(api.settings.redis_url)
        key = f"{api.settings.api_redis_prefix}open-orders:{ana.account_id}"
        try:
            fields = {k.decode() for k in await redis.hkeys(key)}
            assert {f"ord:{waiting}", f"ord:{bought}", f"ord:{resting}", "complete"} <= fields
            assert ids(await get(client, ana, "/api/v1/orders?status=FILLED")) == [bought]
            # Cold (expired, or Redis flushed): read from MongoDB, the same answer, filled in.
            await redis.delete(key)
            assert ids(await get(client, ana, "/api/v1/orders?status=OPEN")) == [waiting]
            assert await redis.hget(key, "complete") == b"1"
            assert ids(await get(client, ana, "/api/v1/orders?status=OPEN&side=SELL")) == []
        finally:
            await redis.aclose()
        gone = await client.delete(f"/api/v1/orders/{waiting}", headers=ana.auth)
        assert gone.status_code == 202, gone.text

        async def none_open() -> bool:
            return ids(await get(client, ana, "/api/v1/orders?status=OPEN")) == []

        await eventually("Ana's last open order cancelled", none_open)
        for bad in ("status=DONE", "pageSize=500", "page=0", "from=yesterday"):
            answer = await client.get(f"/api/v1/orders?{bad}", headers=ana.auth)
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["code"] == "VALIDATION_ERROR"

        # The history of the bought order: requested, accepted, then one fill per sale.
        history = await get(client, ana, f"/api/v1/orders/{bought}/history")
        changes = history["changes"]
        assert [
            (
                c["type"],
                c["status"],
                c["filledQuantity"],
                c["leavesQuantity"],
                c["lastQuantity"],
                c["lastPrice"],
            )
            for c in changes
        ] == [
            ("OrderRequested", "PENDING", "0", "300", None, None),
            ("OrderAccepted", "OPEN", "0", "300", None, None),
            ("OrderPartiallyFilled", "PARTIALLY_FILLED", "100", "200", "100", "38.00"),
            ("OrderFilled", "FILLED", "300", "0", "200", "38.00"),
        ]
        times = [moment(c["eventTime"]) for c in changes]
        assert times == sorted(times)

        # Its state at instants before, at, between and after the events.
        async def at(instant: datetime) -> Any:
            return await client.get(
                f"/api/v1/orders/{bought}", params={"at": iso(instant)}, headers=ana.auth
            )

        before = await at(times[0] - timedelta(microseconds=1))
        assert before.status_code == 404
        assert before.json()["code"] == "ORDER_NOT_YET_PLACED"
        # The exchange stamps its events with the command's time, the request's own: at that
        # instant the order is already OPEN (every event at an instant counts).
        assert times[0] == times[1]
        expected = [
            ("OPEN", "0"),
            ("OPEN", "0"),
            ("PARTIALLY_FILLED", "100"),
            ("FILLED", "300"),
        ]
        for instant, want in zip(times, expected, strict=True):
            exactly = (await at(instant)).json()
            assert (exactly["status"], exactly["filledQuantity"]) == want
        between = (await at(times[2] + (times[3] - times[2]) / 2)).json()
        assert (between["status"], between["filledQuantity"], len(between["fills"])) == (
            "PARTIALLY_FILLED",
            "100",
            1,
        )
        after = (await at(times[3] + timedelta(hours=1))).json()
        assert (after["status"], after["averagePrice"]) == ("FILLED", "38.00000000")

        # The fills, each with its fees once settled (0.03 % of the notional), newest first.
        async def fees_settled() -> bool:
            trades = (await get(client, ana, "/api/v1/trades"))["trades"]
            return len(trades) == 2 and all(t["fees"] is not None for t in trades)

        await eventually("Ana's fills with fees", fees_settled)
        trades = await get(client, ana, "/api/v1/trades")
        assert [
            (t["orderId"], t["side"], t["quantity"], t["price"], t["fees"])
            for t in trades["trades"]
        ] == [
            (bought, "BUY", "200", "38.00", "2.28"),
            (bought, "BUY", "100", "38.00", "1.14"),
        ]
        assert trades["pagination"]["total"] == 2
        assert {t["executionId"] for t in trades["trades"]} == {
            c["executionId"] for c in changes if c["executionId"]
        }
        assert (await get(client, ana, "/api/v1/trades?symbol=VALE3"))["trades"] == []
        assert len((await get(client, bruno, "/api/v1/trades"))["trades"]) == 2

        # The ledger, newest first: gap-free sequences down to the account's opening.
        feed = await get(client, ana, "/api/v1/account/activities?pageSize=200")
        entries = feed["activities"]
        assert [e["sequence"] for e in entries] == list(range(len(entries) - 1, -1, -1))
        assert feed["pagination"]["total"] == len(entries)
        assert entries[-1]["type"] == "AccountOpened"
        assert [e["amount"] for e in entries if e["type"] == "CashDeposited"] == ["20000.00"]
        assert sorted(e["fees"] for e in entries if e["type"] == "FillSettled") == [
            "1.14",
            "2.28",
        ]
        deposits = await get(client, ana, "/api/v1/account/activities?type=CashDeposited")
        assert [e["type"] for e in deposits["activities"]] == ["CashDeposited"]

        # Another user's order: 404 everywhere, as an unknown one.
        for path in (
            f"/api/v1/orders/{bought}",
            f"/api/v1/orders/{bought}/history",
            f"/api/v1/orders/{bought}?at={iso(times[3])}",
            "/api/v1/orders/nope",
        ):
            answer = await client.get(path, headers=bruno.auth)
            assert answer.status_code == 404, (path, answer.text)

        # Projected again from offset 0 (a replay): the history does not change.
        stored = await api.db[ORDER_HISTORY].find({}).sort("_id", 1).to_list()
        await system.stop_projector()
        await asyncio.wait_for(
            run_projector(
                api.settings.model_copy(update={"projections_group_id": f"again-{unique}"}),
                _after(5.0),
            ),
            60,
        )
        assert await api.db[ORDER_HISTORY].find({}).sort("_id", 1).to_list() == stored

        # `brokerflow audit` reads the log itself and tells the same story.
        env = {**system.exchange.env, "MONGO_URL": "mongodb://127.0.0.1:1/"}  # not needed
        audited = await asyncio.to_thread(
            subprocess.run,
            [BROKERFLOW, "audit", bought, "--symbol", "PETR4", "--json", "--at", iso(times[2])],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert audited.returncode == 0, audited.stderr
        report = json.loads(audited.stdout)
        assert [
            (c["type"], c["state"]["status"], c["state"]["filledQuantity"])
            for c in report["changes"]
        ] == [(c["type"], c["status"], c["filledQuantity"]) for c in changes[1:]]
        assert (report["state"]["status"], report["state"]["filledQuantity"]) == (
            "PARTIALLY_FILLED",
            "100",
        )


def _after(seconds: float) -> asyncio.Event:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    return done
