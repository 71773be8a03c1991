"""The broker end to end: the real API (in-process ASGI app), a real Faust worker (the accounts
agent and the exchange) and the real projector, on the real Kafka, Redis and MongoDB.

Two users: Ana deposits cash and buys, Bruno moves shares in from another custodian and sells.
Their orders match on the exchange (a partial fill of Ana's), Ana cancels the rest, and the
account, portfolio and order documents the API serves afterwards are checked to the centavo.
Every amount is computed by hand in the comments: B3 fees are 0.005 % + 0.025 % = 0.03 % of the
notional per side, rounded half-even to the centavo; Bruno's proceeds settle D+2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.settings import Settings

from .api_harness import User, funded_user, live_system, set_last_price, user_with_shares

pytestmark = pytest.mark.integration

WAIT_S = 120.0


async def eventually(
    what: str, probe: Callable[[], Awaitable[Any]], timeout_s: float = WAIT_S
) -> Any:
    """``probe()`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def get(client: httpx.AsyncClient, user: User, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=user.auth)
    assert response.status_code == 200, response.text
    return response.json()


def amounts(values: dict[str, Any]) -> dict[str, Decimal | None]:
    return {key: None if value is None else Decimal(value) for key, value in values.items()}


async def test_sign_up_fund_buy_sell_cancel_and_see_fills_and_portfolio(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    async with live_system(settings, unique, mongo_db, tmp_path, "e2e") as system:
        api = system.api
        client = api.client
        ana = await funded_user(api, "ana", amount="10000.00")
        bruno = await user_with_shares(api, "bruno")

        # Hold 200 x 38.50 = 7700.00 + fee 2.31 = 7702.31.
        buy = await client.post(
            "/api/v1/orders",
            json={
                "symbol": "PETR4",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "200",
                "price": "38.50",
            },
            headers=ana.auth,
        )
        assert buy.status_code == 202, buy.text
        assert buy.json()["status"] == "ACCEPTED"
        buy_id = buy.json()["orderId"]
        assert buy.headers["Location"] == f"/api/v1/orders/{buy_id}"

        # Ana's buy rests before Bruno's sell arrives: the sell takes 150 at 38.50.
        await eventually(
            "Ana's order OPEN",
            lambda: _status_is(client, ana, buy_id, "OPEN"),
        )
        sell = await client.post(
            "/api/v1/orders",
            json={
                "symbol": "PETR4",
                "side": "SELL",
                "type": "LIMIT",
                "quantity": "150",
                "price": "38.40",
            },
            headers=bruno.auth,
        )
        assert sell.status_code == 202, sell.text
        sell_id = sell.json()["orderId"]
        await eventually(
            "Ana's order PARTIALLY_FILLED with its fee",
            lambda: _filled_with_fees(client, ana, buy_id),
        )
        cancel = await client.delete(f"/api/v1/orders/{buy_id}", headers=ana.auth)
        assert cancel.status_code == 202, cancel.text
        await eventually(
            "Ana's order CANCELLED", lambda: _status_is(client, ana, buy_id, "CANCELLED")
        )

        order = await get(client, ana, f"/api/v1/orders/{buy_id}")
        assert amounts(
            {k: order[k] for k in ("quantity", "price", "filledQuantity", "leavesQuantity")}
        ) == {
            "quantity": Decimal("200"),
            "price": Decimal("38.50"),
            "filledQuantity": Decimal("150"),
            "leavesQuantity": Decimal("0"),
        }
        assert Decimal(order["averagePrice"]) == Decimal("38.50")
        (fill,) = order["fills"]
        # 150 x 38.50 = 5775.00; fee 5775.00 x 0.0003 = 1.7325 -> 1.73.
        assert amounts({k: fill[k] for k in ("price", "quantity", "fees")}) == {
            "price": Decimal("38.50"),
            "quantity": Decimal("150"),
            "fees": Decimal("1.73"),
        }
        sold = await get(client, bruno, f"/api/v1/orders/{sell_id}")
        assert sold["status"] == "FILLED"
        assert sold["fills"][0]["executionId"] == fill["executionId"]

        # Ana: 10000.00 - 5775.00 - 1.73 = 4223.27, nothing held once the cancel released
        # the 1925.58 the hold had left.
        async def ana_settled() -> dict[str, Any] | None:
            account = await get(client, ana, "/api/v1/account")
            return account if Decimal(account["balances"]["BRL"]["held"]) == 0 else None

        account = await eventually("Ana's hold released", ana_settled)
        brl = account["balances"]["BRL"]
        assert amounts({k: brl[k] for k in ("cash", "held", "buyingPower", "unsettledCash")}) == {
            "cash": Decimal("4223.27"),
            "held": Decimal("0"),
            "buyingPower": Decimal("4223.27"),
            "unsettledCash": Decimal("0"),
        }

        # Bruno: 5775.00 - 1.73 = 5773.27 unsettled until D+2: spendable, not withdrawable.
        bruno_account = await get(client, bruno, "/api/v1/account")
        bruno_brl = bruno_account["balances"]["BRL"]
        assert Decimal(bruno_brl["unsettledCash"]) == Decimal("5773.27")
        assert Decimal(bruno_brl["buyingPower"]) == Decimal("5773.27")
        assert Decimal(bruno_brl["cash"]) == 0
        early = await client.post(
            "/api/v1/account/withdrawals",
            json={"currency": "BRL", "amount": "100.00"},
            headers=bruno.auth,
        )
        assert early.status_code == 403, early.text
        assert early.json()["code"] == "INSUFFICIENT_FUNDS"

        await set_last_price(api.settings, "PETR4", "39.00")
        portfolio = await get(client, ana, "/api/v1/portfolio")
        (position,) = portfolio["positions"]
        assert position["symbol"] == "PETR4"
        assert Decimal(position["quantity"]) == 150
        # (5775.00 + 1.73) / 150 = 38.511533... -> 38.51153333 (8 places, half-even).
        assert Decimal(position["avgPrice"]) == Decimal("38.51153333")
        assert Decimal(position["currentPrice"]) == Decimal("39.00")
        assert Decimal(position["marketValue"]) == Decimal("5850.00")
        # (39.00 - 38.51153333) x 150 = 73.2700005: 73.27 to the centavo.
        assert Decimal(position["unrealizedPnl"]).quantize(Decimal("0.01")) == Decimal("73.27")
        assert Decimal(portfolio["cash"]["BRL"]) == Decimal("4223.27")

        bruno_portfolio = await get(client, bruno, "/api/v1/portfolio")
        (held,) = bruno_portfolio["positions"]
        assert Decimal(held["quantity"]) == 150
        assert Decimal(held["avgPrice"]) == Decimal("30.00")
        # Realized (38.50 - 30.00) x 150 - 1.73 = 1273.27; unrealized (39 - 30) x 150.
        assert Decimal(held["unrealizedPnl"]) == Decimal("1350.00")
        assert Decimal(held["pnl"]) == Decimal("2623.27")

        # Another user's order does not exist for Ana.
        other = await client.get(f"/api/v1/orders/{sell_id}", headers=ana.auth)
        assert other.status_code == 404


async def _status_is(client: httpx.AsyncClient, user: User, order_id: str, status: str) -> bool:
    order = await get(client, user, f"/api/v1/orders/{order_id}")
    return bool(order["status"] == status)


async def _filled_with_fees(client: httpx.AsyncClient, user: User, order_id: str) -> bool:
    order = await get(client, user, f"/api/v1/orders/{order_id}")
    fills = order.get("fills") or []
    return order["status"] == "PARTIALLY_FILLED" and bool(fills) and fills[0]["fees"] is not None


async def test_a_hundred_concurrent_orders_beyond_buying_power_accept_exactly_the_affordable(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    """10000.00 of cash, 100 buys of 10 PETR4 at 38.50 sent at once: each holds 385.00 + fee
    0.1155 -> 0.12 = 385.12, so 25 fit (9628.00) and the 26th would need 10013.12."""
    async with live_system(
        settings, unique, mongo_db, tmp_path, "e2e100", api_rate_limit="1000/second"
    ) as system:
        api = system.api
        client = api.client
        cleo = await funded_user(api, "cleo", amount="10000.00")
        order = {
            "symbol": "PETR4",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "10",
            "price": "38.50",
        }
        answers = await asyncio.gather(
            *(client.post("/api/v1/orders", json=order, headers=cleo.auth) for _ in range(100))
        )
        outcomes: dict[tuple[int, str], int] = {}
        for answer in answers:
            body = answer.json()
            key = (answer.status_code, body.get("status") or body.get("code"))
            outcomes[key] = outcomes.get(key, 0) + 1
        assert outcomes == {(202, "ACCEPTED"): 25, (403, "INSUFFICIENT_BUYING_POWER"): 75}

        async def all_held() -> dict[str, Any] | None:
            # 25 holds projected; 26 (10013.12) would never come down to this
            account = await get(client, cleo, "/api/v1/account")
            held = Decimal(account["balances"]["BRL"]["held"])
            return account if held == Decimal("9628.00") else None

        account = await eventually("25 holds, 9628.00, projected", all_held, 60)
        brl = amounts({k: account["balances"]["BRL"][k] for k in ("cash", "held", "buyingPower")})
        assert brl == {
            "cash": Decimal("10000.00"),
            "held": Decimal("9628.00"),
            "buyingPower": Decimal("372.00"),
        }
