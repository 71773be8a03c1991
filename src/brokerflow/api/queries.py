"""Order queries: the list with filters and pages, each order's history, its state at an instant.

Served from the read models (:mod:`brokerflow.projections`): ``orders`` for the list, and
``order_events`` (:mod:`brokerflow.projections.history`: the order's state after every event)
for the history and ``?at=``. A user sees only their own orders; anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from brokerflow.api.account import to_decimal
from brokerflow.api.context import ORDERS, ApiContext
from brokerflow.api.deps import Caller, Context
from brokerflow.api.errors import ApiError, error_responses
from brokerflow.api.models import (
    ActivityList,
    OrderChange,
    OrderHistory,
    OrderList,
    OrderView,
    Pagination,
    TradeList,
    TradeView,
)
from brokerflow.api.orders import order_view, owned_order
from brokerflow.api.security import Principal
from brokerflow.projections.cache import OPEN_STATUSES
from brokerflow.projections.folds import ACTIVITIES, ORDER_HISTORY
from brokerflow.projections.history import initial_entry, refusal_entry, state_at
from brokerflow.schemas.base import format_utc
from brokerflow.schemas.orders import OrderStatus, Side

__all__ = ["order_history_entries", "router"]

router = APIRouter(prefix="/api/v1", tags=["orders"])

MAX_PAGE_SIZE = 200


def _bound(value: date | datetime | None, *, end: bool) -> str | None:
    """A filter bound as the stored text: a date means its whole day (UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.combine(value, time(), UTC) + (timedelta(days=1) if end else timedelta())
    return format_utc(moment)


@router.get(
    "/orders",
    response_model=OrderList,
    responses=error_responses(401, 422, 429, 503),
    summary="Your orders, newest first, filtered and paged",
)
async def list_orders(
    ctx: Context,
    who: Caller,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status")] = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    side: Side | None = None,
    from_: Annotated[
        date | datetime | None,
        Query(alias="from", description="Placed at or after (a date: from its start, UTC)"),
    ] = None,
    to: Annotated[
        date | datetime | None,
        Query(description="Placed before (a date: up to its end, UTC)"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> OrderList:
    if status is not None and status.value in OPEN_STATUSES:
        return _page(
            _filtered(await ctx.open_orders(who.account_id), status, symbol, side, from_, to),
            page,
            page_size,
        )
    query: dict[str, Any] = {"accountId": who.account_id}
    if status is not None:
        query["status"] = status.value
    if symbol:
        query["symbol"] = symbol.upper()
    if side is not None:
        query["side"] = side.value
    query.update(_time_range("createdAt", from_, to))
    orders = ctx.db[ORDERS]
    total = await ctx.mongo_op(orders.count_documents(query))
    cursor = (
        orders.find(query)
        .sort([("createdAt", -1), ("_id", -1)])
        .skip((page - 1) * page_size)
        .limit(page_size)
    )
    documents = await ctx.mongo_op(cursor.to_list())
    return OrderList(
        orders=[order_view(document) for document in documents],
        pagination=Pagination(total=total, page=page, page_size=page_size),
    )


def _filtered(
    documents: list[Mapping[str, Any]],
    status: OrderStatus,
    symbol: str | None,
    side: Side | None,
    from_: date | datetime | None,
    to: date | datetime | None,
) -> list[Mapping[str, Any]]:
    """The MongoDB query's filters, applied to the cached open orders."""
    start, end = _bound(from_, end=False), _bound(to, end=True)
    return [
        d
        for d in documents
        if d.get("status") == status.value
        and (not symbol or d.get("symbol") == symbol.upper())
        and (side is None or d.get("side") == side.value)
        and (start is None or str(d.get("createdAt")) >= start)
        and (end is None or str(d.get("createdAt")) < end)
    ]


def _page(documents: list[Mapping[str, Any]], page: int, page_size: int) -> OrderList:
    """Newest first, as the MongoDB query sorts (creation time, then id)."""
    ordered = sorted(
        documents, key=lambda d: (str(d.get("createdAt")), str(d.get("_id"))), reverse=True
    )
    chosen = ordered[(page - 1) * page_size : page * page_size]
    return OrderList(
        orders=[order_view(document) for document in chosen],
        pagination=Pagination(total=len(documents), page=page, page_size=page_size),
    )


async def order_history_entries(
    ctx: ApiContext, who: Principal, order_id: str
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """The caller's order and its history, oldest first (the request itself first)."""
    document = await owned_order(ctx, who, order_id)
    cursor = ctx.db[ORDER_HISTORY].find({"orderId": document["_id"]}).sort("sequence", 1)
    events = await ctx.mongo_op(cursor.to_list())
    entries = [initial_entry(document, events[0] if events else None), *events]
    refused = refusal_entry(document)
    if refused is not None:
        entries.append(refused)
    return document, entries


def _change(entry: Mapping[str, Any]) -> OrderChange:
    state = entry.get("state") or {}
    return OrderChange(
        sequence=entry.get("sequence"),
        type=str(entry.get("type")),
        event_time=datetime.fromisoformat(str(entry["eventTime"]).replace("Z", "+00:00")),
        status=state.get("status") or OrderStatus.PENDING.value,
        filled_quantity=to_decimal(state.get("filledQuantity")),
        leaves_quantity=to_decimal(state.get("leavesQuantity")),
        last_price=to_decimal(entry.get("lastPrice"), None),
        last_quantity=to_decimal(entry.get("lastQuantity"), None),
        execution_id=entry.get("executionId"),
        reason=entry.get("reason"),
    )


@router.get(
    "/orders/{orderId}/history",
    response_model=OrderHistory,
    responses=error_responses(401, 404, 429, 503),
    summary="Every state change of an order, in order",
)
async def order_history(orderId: str, ctx: Context, who: Caller) -> OrderHistory:  # noqa: N803
    document, entries = await order_history_entries(ctx, who, orderId)
    return OrderHistory(order_id=str(document["_id"]), changes=[_change(e) for e in entries])


async def order_at(ctx: ApiContext, who: Principal, order_id: str, at: datetime) -> OrderView:
    """The order as it was at ``at``, exact to the event (one at that very instant included)."""
    instant = at if at.tzinfo else at.replace(tzinfo=UTC)
    document, entries = await order_history_entries(ctx, who, order_id)
    state = state_at(entries, instant)
    if state is None:
        raise ApiError(
            404,
            "ORDER_NOT_YET_PLACED",
            f"order {order_id} was placed at {document.get('createdAt')}, after "
            f"{format_utc(instant)}",
        )
    return order_view({"_id": document["_id"], **state})


PageNumber = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)]


def _time_range(
    field: str, start: date | datetime | None, end: date | datetime | None
) -> dict[str, Any]:
    bounds: dict[str, str] = {}
    if (low := _bound(start, end=False)) is not None:
        bounds["$gte"] = low
    if (high := _bound(end, end=True)) is not None:
        bounds["$lt"] = high
    return {field: bounds} if bounds else {}


@router.get(
    "/trades",
    response_model=TradeList,
    responses=error_responses(401, 422, 429, 503),
    summary="Your fills, newest first",
)
async def list_trades(
    ctx: Context,
    who: Caller,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    from_: Annotated[date | datetime | None, Query(alias="from")] = None,
    to: date | datetime | None = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> TradeList:
    query: dict[str, Any] = {"accountId": who.account_id, "executionId": {"$ne": None}}
    if symbol:
        query["state.symbol"] = symbol.upper()
    query.update(_time_range("eventTime", from_, to))
    history = ctx.db[ORDER_HISTORY]
    total = await ctx.mongo_op(history.count_documents(query))
    cursor = (
        history.find(query)
        .sort([("eventTime", -1), ("_id", -1)])
        .skip((page - 1) * page_size)
        .limit(page_size)
    )
    entries = await ctx.mongo_op(cursor.to_list())
    # Fees come with the ledger's settlement, onto the order's fill.
    orders = ctx.db[ORDERS].find({"_id": {"$in": sorted({e["orderId"] for e in entries})}})
    fees = {
        (document["_id"], fill.get("executionId")): fill.get("fees")
        for document in await ctx.mongo_op(orders.to_list())
        for fill in document.get("fills") or []
    }
    trades = [
        TradeView(
            execution_id=entry["executionId"],
            order_id=entry["orderId"],
            symbol=entry["state"]["symbol"],
            side=entry["state"]["side"],
            price=to_decimal(entry["lastPrice"]),
            quantity=to_decimal(entry["lastQuantity"]),
            fees=to_decimal(fees.get((entry["orderId"], entry["executionId"])), None),
            time=datetime.fromisoformat(str(entry["eventTime"]).replace("Z", "+00:00")),
        )
        for entry in entries
    ]
    return TradeList(
        trades=trades, pagination=Pagination(total=total, page=page, page_size=page_size)
    )


@router.get(
    "/account/activities",
    response_model=ActivityList,
    responses=error_responses(401, 422, 429, 503),
    summary="Your account's ledger entries, newest first",
)
async def list_activities(
    ctx: Context,
    who: Caller,
    kind: Annotated[
        str | None, Query(alias="type", max_length=64, description="CashDeposited, ...")
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> ActivityList:
    query: dict[str, Any] = {"accountId": who.account_id}
    if kind:
        query["type"] = kind
    activities = ctx.db[ACTIVITIES]
    total = await ctx.mongo_op(activities.count_documents(query))
    cursor = (
        activities.find(query, {"_id": 0})
        .sort("sequence", -1)
        .skip((page - 1) * page_size)
        .limit(page_size)
    )
    documents = await ctx.mongo_op(cursor.to_list())
    return ActivityList(
        activities=documents, pagination=Pagination(total=total, page=page, page_size=page_size)
    )
