"""Orders: place (idempotent), cancel, amend, read.

Placing an order, step by step::

    body valid (422)  ->  idempotency claim (409 in flight, 422 other body, replay)
    ->  check_order: symbol, tick, lot, session (422 / 403 MARKET_CLOSED)
    ->  PENDING document in MongoDB `orders` (read your writes; _id = orderId is the backstop)
    ->  RequestOrder on account-commands-v1, keyed by account
    ->  the accounts agent's decision, up to API_DECISION_WAIT_MS:
        RequestAccepted -> 202 ACCEPTED     RequestRefused -> its status, order REJECTED
        nothing yet     -> 202 PENDING (the decision follows as an event)

A MARKET order carries the market cache's last price (``RequestOrder.market_price``): the
agent holds a MARKET buy's funds against it plus the collar, and refuses one with no price.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pymongo.errors import DuplicateKeyError

from brokerflow.api.account import to_decimal
from brokerflow.api.context import ORDERS, ApiContext
from brokerflow.api.decisions import Decision
from brokerflow.api.deps import Caller, Context
from brokerflow.api.errors import ApiError, error_responses, refusal
from brokerflow.api.idempotency import StoredAnswer, body_hash, order_id_for
from brokerflow.api.models import (
    IDEMPOTENCY_KEY_PATTERN,
    AmendRequest,
    FillView,
    OrderAnswer,
    OrderChangeAnswer,
    OrderRequest,
    OrderView,
)
from brokerflow.api.security import Principal
from brokerflow.broker import check_order
from brokerflow.metrics import ORDER_ANSWERS
from brokerflow.projections.folds import new_order_document
from brokerflow.schemas.accounts import (
    RequestAccepted,
    RequestAmend,
    RequestCancel,
    RequestOrder,
    RequestRefused,
)
from brokerflow.schemas.base import format_utc
from brokerflow.schemas.orders import OrderStatus, OrderType

__all__ = [
    "answer_from_document",
    "new_order_document",
    "order_view",
    "owned_order",
    "resolve_idempotency_key",
    "router",
]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["orders"])

PLACE_OPERATION = "POST /api/v1/orders"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Statuses after which an order can no longer be cancelled or amended.
CLOSED = frozenset({"FILLED", "CANCELLED", "REJECTED", "EXPIRED"})
_MAX_ID = 64


def location(order_id: str) -> str:
    return f"/api/v1/orders/{order_id}"


# --- pure pieces ---------------------------------------------------------------------------


def resolve_idempotency_key(header: str | None, body: str | None) -> str | None:
    """The request's idempotency key, from the header or the body; both and different: 400."""
    if header is not None and body is not None and header != body:
        raise ApiError(
            400,
            "IDEMPOTENCY_KEY_MISMATCH",
            "the Idempotency-Key header and the body's idempotencyKey differ; send one of them",
            field="idempotencyKey",
        )
    return header if header is not None else body


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def answer_from_document(document: Mapping[str, Any]) -> StoredAnswer:
    """The answer for an order already placed (a retry whose claim was lost, or resumed)."""
    order_id = str(document.get("orderId") or document.get("_id"))
    status = document.get("status")
    if status == OrderStatus.REJECTED.value:
        code = str(document.get("rejectReason") or "REJECTED")
        message = str(document.get("rejectMessage") or "the order was refused")
        error = refusal(code, message, order_id=order_id)
        return StoredAnswer(error.status, error.body())
    answer = OrderAnswer(
        order_id=order_id,
        status="PENDING" if status in (None, OrderStatus.PENDING.value) else "ACCEPTED",
        timestamp=_time(document.get("createdAt")) or datetime.now(UTC),
    )
    return StoredAnswer(
        202, answer.model_dump(mode="json", by_alias=True), {"Location": location(order_id)}
    )


def order_view(document: Mapping[str, Any]) -> OrderView:
    """An ``orders`` read-model document as the API shows it."""
    quantity = to_decimal(document.get("quantity"))
    filled = to_decimal(document.get("filledQuantity"))
    leaves = to_decimal(document.get("leavesQuantity"), None)
    fills = [
        FillView(
            execution_id=str(fill.get("executionId", "")),
            price=to_decimal(fill.get("price")),
            quantity=to_decimal(fill.get("quantity")),
            fees=to_decimal(fill.get("fees")),
            time=_time(fill.get("time")),
        )
        for fill in document.get("fills") or []
        if isinstance(fill, Mapping)
    ]
    return OrderView(
        order_id=str(document.get("orderId") or document.get("_id")),
        symbol=str(document.get("symbol", "")),
        side=document.get("side"),
        type=document.get("type"),
        time_in_force=document.get("timeInForce") or "GTC",
        quantity=quantity,
        price=to_decimal(document.get("price"), None),
        status=document.get("status") or OrderStatus.PENDING.value,
        filled_quantity=filled,
        leaves_quantity=leaves if leaves is not None else quantity - filled,  # type: ignore[operator]
        average_price=to_decimal(document.get("averagePrice"), None),
        fills=fills,
        created_at=_time(document.get("createdAt")),
        updated_at=_time(document.get("updatedAt")),
        reject_reason=document.get("rejectReason"),
        reject_message=document.get("rejectMessage"),
    )


def _respond(answer: StoredAnswer, *, replayed: bool = False) -> JSONResponse:
    """The answer to a POST /orders, counted by outcome (``api_order_answers_total``)."""
    body = answer.body
    outcome = "REPLAYED" if replayed else body.get("status") or body.get("code") or "?"
    ORDER_ANSWERS.labels(outcome=str(outcome)).inc()
    headers = dict(answer.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


# --- placing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placed:
    answer: StoredAnswer
    #: The order existed already: the answer describes it rather than this request's effect.
    replayed: bool = False


async def _existing(ctx: ApiContext, who: Principal, order_id: str) -> Mapping[str, Any]:
    found = await ctx.mongo_op(ctx.db[ORDERS].find_one({"_id": order_id}))
    if found is None or found.get("userId") != who.user_id:
        raise refusal("ORDER_ID_IN_USE", f"order id {order_id} is taken", order_id=order_id)
    return found


async def _place(ctx: ApiContext, who: Principal, request: RequestOrder) -> _Placed:
    ctx.kafka.require()
    if request.order_type is OrderType.MARKET:
        price = (await ctx.last_prices([request.symbol])).get(request.symbol)
        request = request.model_copy(update={"market_price": price})
    orders = ctx.db[ORDERS]
    document = new_order_document(request, who.user_id)
    try:
        await ctx.mongo_op(orders.insert_one(document))
        await ctx.remember_order(document)
    except DuplicateKeyError:
        # Placed before under this id (its idempotency claim was lost, or a retry after a
        # failure). Still PENDING: it may never have reached Kafka, so send it again; the
        # accounts agent refuses a second copy with ORDER_ID_IN_USE.
        found = await _existing(ctx, who, request.order_id)
        if found.get("status") != OrderStatus.PENDING.value:
            return _Placed(answer_from_document(found), replayed=True)
    decision = await ctx.request(request)
    return await _decided(ctx, who, request, decision)


async def _decided(
    ctx: ApiContext, who: Principal, request: RequestOrder, decision: Decision | None
) -> _Placed:
    order_id = request.order_id
    if decision is None or isinstance(decision, RequestAccepted):
        answer = OrderAnswer(
            order_id=order_id,
            status="PENDING" if decision is None else "ACCEPTED",
            timestamp=request.event_time,
        )
        body = answer.model_dump(mode="json", by_alias=True)
        return _Placed(StoredAnswer(202, body, {"Location": location(order_id)}))
    assert isinstance(decision, RequestRefused)
    if decision.code == "ORDER_ID_IN_USE":
        return _Placed(answer_from_document(await _existing(ctx, who, order_id)), replayed=True)
    await ctx.mongo_op(
        ctx.db[ORDERS].update_one(
            {"_id": order_id, "status": OrderStatus.PENDING.value},
            {
                "$set": {
                    "status": OrderStatus.REJECTED.value,
                    "rejectReason": decision.code,
                    "rejectMessage": decision.message,
                    "leavesQuantity": "0",
                    "updatedAt": format_utc(decision.event_time),
                }
            },
        )
    )
    error = refusal(decision.code, decision.message, order_id=order_id)
    return _Placed(StoredAnswer(error.status, error.body()))


_PLACE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OrderAnswer,
        "description": "Accepted (funds held, sent to the exchange) or PENDING (decision "
        "follows). A replay of an idempotent request says `Idempotent-Replayed: true`",
        "headers": {
            "Location": {"description": "The order", "schema": {"type": "string"}},
            REPLAYED_HEADER: {
                "description": "`true` on a replay of an idempotent request's first answer",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
    },
    **error_responses(400, 401, 403, 404, 409, 422, 429, 503),
}


@router.post(
    "/orders",
    status_code=202,
    response_model=OrderAnswer,
    responses=_PLACE_RESPONSES,
    summary="Place an order (idempotent with a key)",
)
async def place_order(
    body: OrderRequest,
    ctx: Context,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Same as the body's idempotencyKey (send either; both must agree)",
        ),
    ] = None,
) -> Any:
    """Holds the funds (BUY) or shares (SELL) and sends the order to the exchange.

    With an idempotency key, a retry of the same body returns the first answer (and never a
    second order); the order id is derived from the key, so it is the same on every retry."""
    key = resolve_idempotency_key(idempotency_key, body.idempotency_key)
    order_id = order_id_for(who.user_id, key) if key else str(uuid.uuid4())
    draft = RequestOrder(
        request_id=order_id,
        order_id=order_id,
        account_id=who.account_id,
        symbol=body.symbol,
        side=body.side,
        order_type=body.type,
        time_in_force=body.time_in_force,
        quantity=body.quantity,
        price=body.price,
        idempotency_key=key,
        event_time=datetime.now(UTC),
    )
    if key is None:
        _check(ctx, draft)
        return _respond((await _place(ctx, who, draft)).answer)

    digest = body_hash(PLACE_OPERATION, {k: v for k, v in body if k != "idempotency_key"})
    claim = await ctx.redis_op(ctx.idempotency.claim(who.user_id, key, digest))
    if claim.outcome == "replay":
        assert claim.answer is not None
        return _respond(claim.answer, replayed=True)
    if claim.outcome == "in_flight":
        raise ApiError(
            409,
            "REQUEST_IN_PROGRESS",
            "a request with this idempotency key is still being processed; retry shortly",
            field="idempotencyKey",
            headers={"Retry-After": "1"},
            order_id=order_id,
            retry_after=1,
        )
    if claim.outcome == "mismatch":
        raise ApiError(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was used with another request body; use a new key",
            field="idempotencyKey",
        )
    try:
        _check(ctx, draft)
        placed = await _place(ctx, who, draft)
    except BaseException:
        # Nothing placed that we know of (a refusal by the rules, or an outage): free the key
        # so a retry runs; an order that did get through is found by its id.
        with contextlib.suppress(Exception):
            await ctx.redis_op(ctx.idempotency.release(who.user_id, key))
        raise
    try:
        await ctx.redis_op(ctx.idempotency.complete(who.user_id, key, digest, placed.answer))
    except ApiError as exc:  # the order stands; a retry finds it through the backstop
        log.warning("idempotency answer not stored for order %s: %s", order_id, exc.message)
    return _respond(placed.answer, replayed=placed.replayed)


def _check(ctx: ApiContext, request: RequestOrder) -> None:
    try:
        refused = check_order(ctx.rules, request)
    except ArithmeticError:
        raise ApiError(
            422, "VALIDATION_ERROR", "quantity or price is out of range", field="quantity"
        ) from None
    if refused is not None:
        raise refusal(refused.code, refused.message)


# --- reading, cancelling, amending ---------------------------------------------------------


async def owned_order(ctx: ApiContext, who: Principal, order_id: str) -> Mapping[str, Any]:
    """The caller's order; 404 for an unknown id and for another user's order alike."""
    found = None
    if 0 < len(order_id) <= _MAX_ID:
        found = await ctx.mongo_op(
            ctx.db[ORDERS].find_one({"_id": order_id, "userId": who.user_id})
        )
    if found is None:
        raise ApiError(404, "UNKNOWN_ORDER", f"no order {order_id[:_MAX_ID]!r} of yours")
    return found


@router.get(
    "/orders/{orderId}",
    response_model=OrderView,
    responses=error_responses(401, 404, 422, 429, 503),
    summary="An order with its fills (or as it was at an instant)",
)
async def get_order(
    orderId: str,  # noqa: N803
    ctx: Context,
    who: Caller,
    at: Annotated[
        datetime | None,
        Query(description="The order as it was at this instant (ISO 8601), from its events"),
    ] = None,
) -> OrderView:
    """Served from the orders projection; an order just placed shows at least as PENDING.
    With ``at``: its state then, exact to the event (seed 002's audit question)."""
    if at is not None:
        from brokerflow.api.queries import order_at  # queries builds on this module

        return await order_at(ctx, who, orderId, at)
    return order_view(await owned_order(ctx, who, orderId))


def _still_open(document: Mapping[str, Any]) -> None:
    status = document.get("status")
    if status in CLOSED:
        order_id = str(document.get("_id"))
        raise refusal("ORDER_NOT_OPEN", f"the order is {status}", order_id=order_id)


def _change_answer(request: RequestCancel | RequestAmend, decision: Decision | None) -> Any:
    if isinstance(decision, RequestRefused):
        raise refusal(
            decision.code,
            decision.message,
            order_id=request.order_id,
            request_id=request.request_id,
        )
    answer = OrderChangeAnswer(
        order_id=request.order_id,
        request_id=request.request_id,
        status="PENDING" if decision is None else "ACCEPTED",
        timestamp=request.event_time,
    )
    return JSONResponse(
        answer.model_dump(mode="json", by_alias=True),
        status_code=202,
        headers={"Location": location(request.order_id)},
    )


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": OrderChangeAnswer, "description": "Sent to the exchange, or PENDING"},
    **error_responses(400, 401, 403, 404, 409, 422, 429, 503),
}


@router.delete(
    "/orders/{orderId}",
    status_code=202,
    response_model=OrderChangeAnswer,
    responses=_CHANGE_RESPONSES,
    summary="Cancel an order",
)
async def cancel_order(orderId: str, ctx: Context, who: Caller) -> Any:  # noqa: N803
    """The hold is released when the exchange confirms. A cancel that loses the race with a
    fill is answered by a CancelRequestRejected event, never silently dropped."""
    document = await owned_order(ctx, who, orderId)
    _still_open(document)
    request = RequestCancel(
        request_id=str(uuid.uuid4()),
        account_id=who.account_id,
        order_id=orderId,
        event_time=datetime.now(UTC),
    )
    ctx.kafka.require()
    # The first cancel requested, recorded before it is sent: the reconciler sends it again if
    # the order is still open a while later (brokerflow.reconciler).
    await ctx.mongo_op(
        ctx.db[ORDERS].update_one(
            {"_id": orderId, "cancelRequestedAt": {"$exists": False}},
            {
                "$set": {
                    "cancelRequestedAt": format_utc(request.event_time),
                    "cancelRequestId": request.request_id,
                }
            },
        )
    )
    return _change_answer(request, await ctx.request(request))


@router.patch(
    "/orders/{orderId}",
    status_code=202,
    response_model=OrderChangeAnswer,
    responses=_CHANGE_RESPONSES,
    summary="Amend an order's quantity and/or price",
)
async def amend_order(orderId: str, body: AmendRequest, ctx: Context, who: Caller) -> Any:  # noqa: N803
    """Quantity down keeps time priority; a new price or more quantity re-queues. The hold
    follows the change."""
    document = await owned_order(ctx, who, orderId)
    _still_open(document)
    instrument = ctx.rules.instruments.get(str(document.get("symbol")))
    if body.price is not None and document.get("type") == OrderType.MARKET.value:
        raise ApiError(422, "VALIDATION_ERROR", "a MARKET order has no price", field="price")
    if instrument is not None:
        try:
            if body.price is not None and body.price % instrument.tick_size != 0:
                raise refusal(
                    "TICK_SIZE",
                    f"{instrument.symbol} prices are multiples of {instrument.tick_size}",
                    order_id=orderId,
                )
            if body.quantity is not None and body.quantity % instrument.lot_size != 0:
                raise refusal(
                    "LOT_SIZE",
                    f"{instrument.symbol} quantities are multiples of {instrument.lot_size}",
                    order_id=orderId,
                )
        except ArithmeticError:
            raise ApiError(
                422, "VALIDATION_ERROR", "quantity or price is out of range", field="quantity"
            ) from None
    request = RequestAmend(
        request_id=str(uuid.uuid4()),
        account_id=who.account_id,
        order_id=orderId,
        quantity=body.quantity,
        price=body.price,
        event_time=datetime.now(UTC),
    )
    return _change_answer(request, await ctx.request(request))
