"""The API through its real ASGI app, against the real Kafka, Redis and MongoDB.

Decisions come from :class:`~.api_harness.StandInAccountsAgent` (a test double of the accounts
agent); the read models (``accounts``, ``positions``) are written here by hand, as the projector
would, so the numbers the API computes from them are checked exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.api.security import Principal, TokenCodec
from brokerflow.projections.cache import PortfolioCache
from brokerflow.schemas.accounts import OpenAccount, RequestOrder
from brokerflow.settings import Settings

from .api_harness import (
    LIMIT_BUY,
    PASSWORD,
    Api,
    api_namespace,
    funded_user,
    set_last_price,
    sign_up,
)


@pytest.fixture
async def api(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> AsyncIterator[Api]:
    async with api_namespace(settings, unique, mongo_db) as namespace:
        yield namespace


async def test_sign_up_opens_an_account_and_logs_in(api: Api) -> None:
    user = await sign_up(api.client, "Ana")
    stored = await api.db["users"].find_one({"_id": user.user_id})
    assert stored is not None
    assert stored["username"] == "ana"
    assert stored["accountId"] == user.account_id
    assert stored["passwordHash"].startswith("$argon2id$")
    assert PASSWORD not in stored["passwordHash"]

    # The OpenAccount precedes every later request of the account on its partition: a deposit
    # answered ACCEPTED proves the agent saw the account opened first.
    await api.client.post(
        "/api/v1/account/deposits", json={"currency": "BRL", "amount": "1"}, headers=user.auth
    )
    opened = [r for r in api.stand_in.seen if isinstance(r, OpenAccount)]
    assert [(r.account_id, r.user_id) for r in opened] == [(user.account_id, user.user_id)]

    again = await api.client.post("/api/v1/users", json={"username": "ANA", "password": PASSWORD})
    assert again.status_code == 409
    assert again.json()["code"] == "USERNAME_TAKEN"
    assert again.json()["field"] == "username"

    weak = await api.client.post("/api/v1/users", json={"username": "bob", "password": "short"})
    assert (weak.status_code, weak.json()["field"]) == (422, "password")


async def test_bad_credentials_and_bad_tokens_are_401(api: Api) -> None:
    user = await sign_up(api.client, "carla")
    wrong = await api.client.post(
        "/api/v1/auth/token", json={"username": "carla", "password": "not-her-password"}
    )
    unknown = await api.client.post(
        "/api/v1/auth/token", json={"username": "nobody", "password": PASSWORD}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["code"] == "INVALID_CREDENTIALS"
        assert response.headers["WWW-Authenticate"] == "Bearer"

    codec = TokenCodec(api.settings.api_jwt_secret, api.settings.api_token_ttl_s)
    expired = codec.issue(
        Principal(user.user_id, user.account_id),
        now=datetime.now(UTC) - timedelta(seconds=api.settings.api_token_ttl_s + 5),
    )
    forged = TokenCodec("f" * 64, 3600).issue(Principal(user.user_id, user.account_id))
    cases = {
        "NOT_AUTHENTICATED": {},
        "INVALID_TOKEN": {"Authorization": f"Bearer {forged}"},
        "TOKEN_EXPIRED": {"Authorization": f"Bearer {expired}"},
    }
    for code, headers in cases.items():
        response = await api.client.get("/api/v1/account", headers=headers)
        assert response.status_code == 401, code
        assert response.json()["code"] == code
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    basic = await api.client.get("/api/v1/account", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


async def test_deposit_and_withdrawals(api: Api) -> None:
    user = await sign_up(api.client, "dora")
    deposit = await api.client.post(
        "/api/v1/account/deposits",
        json={"currency": "BRL", "amount": "1000.00"},
        headers=user.auth,
    )
    assert deposit.status_code == 201
    body = deposit.json()
    assert (body["status"], body["currency"], body["amount"]) == ("ACCEPTED", "BRL", "1000.00")
    assert body["timestamp"].endswith("Z")

    too_much = await api.client.post(
        "/api/v1/account/withdrawals",
        json={"currency": "BRL", "amount": "1000.01"},
        headers=user.auth,
    )
    assert too_much.status_code == 403
    assert too_much.json()["code"] == "INSUFFICIENT_FUNDS"
    assert too_much.json()["field"] == "amount"

    fine = await api.client.post(
        "/api/v1/account/withdrawals",
        json={"currency": "BRL", "amount": "250.50"},
        headers=user.auth,
    )
    assert (fine.status_code, fine.json()["status"]) == (201, "ACCEPTED")
    assert api.stand_in.accounts[user.account_id].cash["BRL"] == Decimal("749.50")

    cents = await api.client.post(
        "/api/v1/account/deposits", json={"currency": "BRL", "amount": "1.001"}, headers=user.auth
    )
    assert (cents.status_code, cents.json()["code"]) == (422, "AMOUNT_PRECISION")
    euros = await api.client.post(
        "/api/v1/account/deposits", json={"currency": "EUR", "amount": "1"}, headers=user.auth
    )
    assert (euros.status_code, euros.json()["field"]) == (422, "currency")


async def test_an_order_accepted_is_readable_at_once(api: Api) -> None:
    user = await funded_user(api, "eva")
    placed = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=user.auth)
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["orderId"]
    assert placed.json()["status"] == "ACCEPTED"
    assert placed.headers["Location"] == f"/api/v1/orders/{order_id}"
    assert api.stand_in.accounts[user.account_id].held["BRL"] == Decimal("3812.00")  # 100 x 38.12

    read = await api.client.get(f"/api/v1/orders/{order_id}", headers=user.auth)
    assert read.status_code == 200
    view = read.json()
    assert view["status"] == "PENDING"  # OPEN once the exchange's answer is projected
    assert {k: view[k] for k in ("symbol", "side", "type", "timeInForce", "quantity", "price")} == {
        "symbol": "PETR4",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "100",
        "price": "38.12",
    }
    assert (view["filledQuantity"], view["leavesQuantity"], view["fills"]) == ("0", "100", [])
    assert view["averagePrice"] is None
    assert view["rejectReason"] is None
    stored = await api.db["orders"].find_one({"_id": order_id})
    assert stored is not None
    assert (stored["userId"], stored["accountId"]) == (user.user_id, user.account_id)
    assert stored["lastSequence"] == -1


async def test_an_order_beyond_buying_power_is_refused_and_nothing_is_held(api: Api) -> None:
    user = await funded_user(api, "fabio", amount="1000.00")
    refused = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=user.auth)
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "INSUFFICIENT_BUYING_POWER"
    assert api.stand_in.accounts[user.account_id].held.get("BRL", Decimal(0)) == 0

    read = await api.client.get(f"/api/v1/orders/{body['orderId']}", headers=user.auth)
    assert read.json()["status"] == "REJECTED"
    assert read.json()["rejectReason"] == "INSUFFICIENT_BUYING_POWER"
    assert read.json()["leavesQuantity"] == "0"


async def test_the_rules_refuse_before_anything_is_sent(api: Api) -> None:
    user = await funded_user(api, "gil")
    cases = [
        ({**LIMIT_BUY, "symbol": "NOPE3"}, 422, "UNKNOWN_SYMBOL", "symbol"),
        ({**LIMIT_BUY, "price": "38.125"}, 422, "TICK_SIZE", "price"),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.000001"}
            | {"price": "60000"},
            422,
            "LOT_SIZE",
            "quantity",
        ),
        ({**LIMIT_BUY, "type": "MARKET"}, 422, "VALIDATION_ERROR", "price"),
        ({**LIMIT_BUY, "quantity": 100}, 422, "VALIDATION_ERROR", "quantity"),
    ]
    for body, status, code, field in cases:
        response = await api.client.post("/api/v1/orders", json=body, headers=user.auth)
        assert (response.status_code, response.json()["code"]) == (status, code), body
        assert response.json()["field"] == field
    placed = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=user.auth)
    assert placed.json()["status"] == "ACCEPTED"
    # One partition per account, in order: the accepted order is the only one that was sent.
    sent = [r.order_id for r in api.stand_in.seen if isinstance(r, RequestOrder)]
    assert sent == [placed.json()["orderId"]]
    assert await api.db["orders"].count_documents({"userId": user.user_id}) == 1


async def test_a_market_order_carries_the_last_price(api: Api) -> None:
    user = await funded_user(api, "hana", currency="USDT", amount="100000")
    await set_last_price(api.settings, "BTCUSDT", "60000.50")
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.5"}
    placed = await api.client.post("/api/v1/orders", json=market, headers=user.auth)
    assert placed.json()["status"] == "ACCEPTED"
    (sent,) = [r for r in api.stand_in.seen if isinstance(r, RequestOrder)]
    assert sent.market_price == Decimal("60000.50")
    assert sent.price is None

    unknown = {**market, "symbol": "ETHUSDT", "quantity": "1"}
    refused = await api.client.post("/api/v1/orders", json=unknown, headers=user.auth)
    assert (refused.status_code, refused.json()["code"]) == (403, "NO_MARKET_PRICE")


async def test_cancel_and_amend(api: Api) -> None:
    user = await funded_user(api, "ines")
    order_id = (await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=user.auth)).json()[
        "orderId"
    ]
    amended = await api.client.patch(
        f"/api/v1/orders/{order_id}", json={"price": "38.10"}, headers=user.auth
    )
    assert amended.status_code == 202
    assert (amended.json()["orderId"], amended.json()["status"]) == (order_id, "ACCEPTED")
    off_tick = await api.client.patch(
        f"/api/v1/orders/{order_id}", json={"price": "38.101"}, headers=user.auth
    )
    assert (off_tick.status_code, off_tick.json()["code"]) == (422, "TICK_SIZE")
    nothing = await api.client.patch(f"/api/v1/orders/{order_id}", json={}, headers=user.auth)
    assert (nothing.status_code, nothing.json()["field"]) == (422, "quantity")

    cancelled = await api.client.delete(f"/api/v1/orders/{order_id}", headers=user.auth)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "ACCEPTED"

    await api.db["orders"].update_one({"_id": order_id}, {"$set": {"status": "FILLED"}})
    closed = await api.client.delete(f"/api/v1/orders/{order_id}", headers=user.auth)
    assert (closed.status_code, closed.json()["code"]) == (409, "ORDER_NOT_OPEN")


async def test_another_users_order_is_404(api: Api) -> None:
    owner = await funded_user(api, "joao")
    other = await sign_up(api.client, "kai")
    order_id = (await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=owner.auth)).json()[
        "orderId"
    ]
    for response in (
        await api.client.get(f"/api/v1/orders/{order_id}", headers=other.auth),
        await api.client.delete(f"/api/v1/orders/{order_id}", headers=other.auth),
        await api.client.patch(
            f"/api/v1/orders/{order_id}", json={"quantity": "1"}, headers=other.auth
        ),
        await api.client.get("/api/v1/orders/no-such-order", headers=owner.auth),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "UNKNOWN_ORDER"
    still = await api.client.get(f"/api/v1/orders/{order_id}", headers=owner.auth)
    assert still.status_code == 200


async def test_custody_transfer_then_sell(api: Api) -> None:
    user = await sign_up(api.client, "lia")
    priced = await api.client.post(
        "/api/v1/account/custody-transfers",
        json={"symbol": "VALE3", "quantity": "100", "averagePrice": "61.20"},
        headers=user.auth,
    )
    assert priced.status_code == 201
    assert (priced.json()["averagePrice"], priced.json()["status"]) == ("61.20", "ACCEPTED")

    unpriced = {"symbol": "PETR4", "quantity": "200"}
    missing = await api.client.post(
        "/api/v1/account/custody-transfers", json=unpriced, headers=user.auth
    )
    assert missing.status_code == 422
    assert (missing.json()["code"], missing.json()["field"]) == (
        "AVERAGE_PRICE_REQUIRED",
        "averagePrice",
    )
    await set_last_price(api.settings, "PETR4", "38.15")
    market = await api.client.post(
        "/api/v1/account/custody-transfers", json=unpriced, headers=user.auth
    )
    assert (market.status_code, market.json()["averagePrice"]) == (201, "38.15")

    sell = {"symbol": "PETR4", "side": "SELL", "type": "LIMIT", "quantity": "200"}
    placed = await api.client.post(
        "/api/v1/orders", json={**sell, "price": "39.00"}, headers=user.auth
    )
    assert placed.json()["status"] == "ACCEPTED"
    short = await api.client.post(
        "/api/v1/orders", json={**sell, "quantity": "1", "price": "39.00"}, headers=user.auth
    )
    assert (short.status_code, short.json()["code"]) == (403, "INSUFFICIENT_SHARES")


async def write_through(api: Api, account_id: str) -> None:
    redis = Redis.from_url(api.settings.redis_url)
    try:
        cache = PortfolioCache(redis, api.settings.api_redis_prefix, 60)
        account = await api.db["accounts"].find_one({"_id": account_id})
        positions = await api.db["positions"].find({"accountId": account_id}).to_list(None)
        await cache.write_through({account_id: account}, positions)
    finally:
        await redis.aclose()


async def test_account_and_portfolio_from_the_read_models(api: Api) -> None:
    user = await sign_up(api.client, "mia")
    fresh = await api.client.get("/api/v1/account", headers=user.auth)
    assert fresh.status_code == 200
    assert fresh.json()["balances"]["BRL"] == {
        "cash": "0",
        "held": "0",
        "unsettledCash": "0",
        "buyingPower": "0",
        "withdrawable": "0",
    }
    await api.db["accounts"].insert_one(
        {
            "_id": user.account_id,
            "accountId": user.account_id,
            "userId": user.user_id,
            "sequence": 7,
            "balances": {"BRL": {"cash": "5000.00", "held": "381.20", "unsettled": "1250.00"}},
            "sharesHeld": {"VALE3": "100"},
        }
    )
    await api.db["positions"].insert_many(
        [
            {
                "_id": f"{user.account_id}|PETR4",
                "accountId": user.account_id,
                "symbol": "PETR4",
                "currency": "BRL",
                "quantity": "300",
                "averagePrice": "37.9012",
                "realizedPnl": "-15.40",
            },
            {
                "_id": f"{user.account_id}|VALE3",
                "accountId": user.account_id,
                "symbol": "VALE3",
                "currency": "BRL",
                "quantity": "100",
                "averagePrice": "61.20",
                "realizedPnl": "0",
            },
        ]
    )
    await set_last_price(api.settings, "PETR4", "38.12")
    # The projector writes every document it changes through to the portfolio cache; this
    # test plays the projector, so it does the same.
    await write_through(api, user.account_id)

    account = (await api.client.get("/api/v1/account", headers=user.auth)).json()
    assert account["balances"]["BRL"] == {
        "cash": "5000.00",
        "held": "381.20",
        "unsettledCash": "1250.00",
        "buyingPower": "5868.80",  # 5000.00 + 1250.00 - 381.20
        "withdrawable": "4618.80",  # settled and not held: 5000.00 - 381.20
    }
    assert account["sharesHeld"] == {"VALE3": "100"}

    portfolio = (await api.client.get("/api/v1/portfolio", headers=user.auth)).json()
    assert portfolio["cash"]["BRL"] == "6250.00"  # settled + unsettled
    petr4, vale3 = portfolio["positions"]
    # 300 x 38.12 = 11436.00; (38.12 - 37.9012) x 300 = 65.64; -15.40 + 65.64 = 50.24
    assert petr4 == {
        "symbol": "PETR4",
        "currency": "BRL",
        "quantity": "300",
        "avgPrice": "37.9012",
        "currentPrice": "38.12",
        "marketValue": "11436.00",
        "realizedPnl": "-15.40",
        "unrealizedPnl": "65.64",
        "pnl": "50.24",
    }
    assert (vale3["currentPrice"], vale3["marketValue"], vale3["unrealizedPnl"]) == (
        None,
        None,
        None,
    )


async def test_assets_and_rate_limit_headers(api: Api) -> None:
    user = await sign_up(api.client, "nina")
    response = await api.client.get("/api/v1/assets", headers=user.auth)
    assert response.status_code == 200
    assets = {a["symbol"]: a for a in response.json()["assets"]}
    assert {"PETR4", "VALE3", "ITUB4", "BBDC4", "BTCUSDT", "ETHUSDT"} <= set(assets)
    petr4 = assets["PETR4"]
    assert (petr4["venue"], petr4["currency"], petr4["session"]) == ("B3", "BRL", "B3")
    assert (petr4["tickSize"], petr4["lotSize"], petr4["settlementDays"]) == ("0.01", "1", 2)
    # B3: trading 0.005 % + settlement 0.025 % per side (the settings' defaults)
    assert Decimal(petr4["fees"]["buyPct"]) == Decimal("0.030")
    assert Decimal(petr4["fees"]["sellPct"]) == Decimal("0.030")
    btc = assets["BTCUSDT"]
    assert (btc["currency"], btc["session"], btc["settlementDays"]) == ("USDT", "24x7", 0)
    assert Decimal(btc["lotSize"]) == Decimal("0.00001")
    assert Decimal(btc["fees"]["buyPct"]) == Decimal("0.1")

    # Every authenticated answer carries the rate limit, errors included.
    missing = await api.client.get("/api/v1/orders/nope", headers=user.auth)
    for answer in (response, missing):
        assert answer.headers["X-RateLimit-Limit"] == "1000"
        assert int(answer.headers["X-RateLimit-Remaining"]) < 1000
        assert int(answer.headers["X-RateLimit-Reset"]) >= int(datetime.now(UTC).timestamp())


async def test_no_decision_in_time_is_202_pending(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    """No accounts agent answering: the order is PENDING, readable, and the answer says so."""
    async with api_namespace(
        settings, unique, mongo_db, stand_in=False, api_decision_wait_ms=200
    ) as api:
        user = await sign_up(api.client, "olga")
        placed = await api.client.post("/api/v1/orders", json=LIMIT_BUY, headers=user.auth)
        assert placed.status_code == 202
        assert placed.json()["status"] == "PENDING"
        read = await api.client.get(placed.headers["Location"], headers=user.auth)
        assert read.json()["status"] == "PENDING"
        deposit = await api.client.post(
            "/api/v1/account/deposits",
            json={"currency": "BRL", "amount": "5"},
            headers=user.auth,
        )
        assert (deposit.status_code, deposit.json()["status"]) == (202, "PENDING")
