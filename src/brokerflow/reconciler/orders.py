"""Orders stuck on their way: the request to send again, rebuilt from the ``orders`` document.

Pure. An order the API wrote PENDING but whose ``RequestOrder`` never reached Kafka (the API
crashed, or answered 503 after writing it) stays PENDING for ever; so does a cancel whose
``RequestCancel`` was lost. Sending the request again is safe, because the accounts agent decides
by order id:

* ``RequestOrder`` of an order it knows (open, or closed within ``closed_order_memory``) is
  refused ``ORDER_ID_IN_USE``, which the projector ignores; only an order it never saw is decided,
  exactly as the first copy would have been (same id, event time, and a MARKET order's price).
  The exchange never sees a second copy (and would ignore a known order id anyway).
* ``RequestCancel`` of an order with a cancel already on its way is refused ``CANCEL_PENDING``,
  of an order no longer open ``UNKNOWN_ORDER``; neither changes anything.

The document fields used are those of
:func:`brokerflow.projections.folds.new_order_document`, and the ``cancelRequestedAt`` /
``cancelRequestId`` the API records when it accepts a cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from brokerflow.schemas.accounts import RequestCancel, RequestOrder

__all__ = [
    "BACKLOG_SLACK",
    "OPEN_STATUSES",
    "cancel_request_of",
    "order_request_of",
    "split_queued",
]

#: Records a consumer group may trail the end of a partition and still be caught up: the last
#: thing in a partition written by a transaction is its commit marker, which no consumer commits.
BACKLOG_SLACK = 1

#: Orders a cancel can still apply to.
OPEN_STATUSES = ("PENDING", "OPEN", "PARTIALLY_FILLED")


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_request_of(document: Mapping[str, Any]) -> RequestOrder:
    """The ``RequestOrder`` the API sent (or meant to send) for this PENDING order.

    Raises ``ValueError`` (a pydantic ``ValidationError`` or a bad time) for a document that
    cannot be one."""
    order_id = str(document["_id"])
    return RequestOrder(
        request_id=order_id,
        order_id=order_id,
        account_id=document["accountId"],
        symbol=document["symbol"],
        side=document["side"],
        order_type=document["type"],
        time_in_force=document.get("timeInForce") or "GTC",
        quantity=document["quantity"],
        price=document.get("price"),
        market_price=document.get("marketPrice"),
        idempotency_key=document.get("idempotencyKey"),
        event_time=_time(document["createdAt"]),
    )


def cancel_request_of(document: Mapping[str, Any]) -> RequestCancel:
    """The ``RequestCancel`` the API sent when the user cancelled this order."""
    order_id = str(document["_id"])
    return RequestCancel(
        request_id=document.get("cancelRequestId") or f"{order_id}:cancel",
        account_id=document["accountId"],
        order_id=order_id,
        event_time=_time(document["cancelRequestedAt"]),
    )


def split_queued(
    requests: list[RequestOrder | RequestCancel],
    partition_of: Callable[[str], int],
    backlog: Mapping[int, int],
) -> tuple[list[RequestOrder | RequestCancel], list[RequestOrder | RequestCancel]]:
    """Split into (lost, queued): a request on a partition the accounts agent has not read to the
    end may still be in that backlog, so sending it again would only lengthen the queue of an
    overloaded worker. Only a request whose partition is read to the end was surely lost."""
    lost: list[RequestOrder | RequestCancel] = []
    queued: list[RequestOrder | RequestCancel] = []
    for request in requests:
        behind = backlog.get(partition_of(request.account_id), 0) > BACKLOG_SLACK
        (queued if behind else lost).append(request)
    return lost, queued
