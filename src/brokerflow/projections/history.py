"""An order's history from its events, and its state at any instant (seed 002's audit question:
"what was the state of order X at 10:32:47.123?").

Pure. :func:`history_entries` folds an order's exchange events one at a time with the same
:func:`~.folds.fold_order` as the orders read model and keeps the state after each: one entry
per state change, ``_id = "{orderId}:{sequence}"`` (the exchange's sequence), so writing them
again (a replay) changes nothing. :func:`state_at` answers from those entries, exact to the
event: an event at exactly the instant asked is included.

Collection ``order_events`` (under the store's prefix, so a rebuild makes it afresh)::

    {"_id": "o-1:12", "orderId": "o-1", "accountId": "...", "userId": "...", "sequence": 12,
     "type": "OrderPartiallyFilled", "eventTime": "2026-06-25T10:32:47.123000Z",
     "executionId": "PETR4-T4", "lastPrice": "38.50", "lastQuantity": "100", "reason": null,
     "state": {"status": "PARTIALLY_FILLED", "filledQuantity": "100", ...}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from brokerflow.projections.folds import ORDER_EVENTS, ORDER_HISTORY, Document, fold_order
from brokerflow.schemas.base import Message, format_decimal, format_utc

__all__ = [
    "ORDER_HISTORY",
    "STATE_FIELDS",
    "history_entries",
    "initial_entry",
    "refusal_entry",
    "state_at",
]

#: The order document's fields an entry keeps as the state after its event.
STATE_FIELDS = (
    "orderId",
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "price",
    "status",
    "filledQuantity",
    "leavesQuantity",
    "averagePrice",
    "fills",
    "rejectReason",
    "rejectMessage",
    "createdAt",
    "updatedAt",
)


def _state(document: Mapping[str, Any]) -> Document:
    return {name: document.get(name) for name in STATE_FIELDS}


def history_entries(document: Document, events: Iterable[Message]) -> list[Document]:
    """The entries ``events`` add to the history of the order ``document`` is (before them)."""
    entries: list[Document] = []
    state = document
    for event in events:
        if not isinstance(event, ORDER_EVENTS):
            continue
        new = fold_order(state, event)
        if new is None:  # already applied, or a cancel/amend that lost: no state change
            continue
        data = event.__dict__
        last_price, last_quantity = data.get("last_price"), data.get("last_quantity")
        entries.append(
            {
                "_id": f"{document['_id']}:{event.sequence}",
                "orderId": document["_id"],
                "accountId": document.get("accountId"),
                "userId": document.get("userId"),
                "sequence": event.sequence,
                "type": event.type,
                "eventTime": format_utc(event.event_time),
                "executionId": data.get("trade_id"),
                "lastPrice": None if last_price is None else format_decimal(last_price),
                "lastQuantity": None if last_quantity is None else format_decimal(last_quantity),
                "reason": data.get("reason"),
                "state": _state(new),
            }
        )
        state = new
    return entries


def initial_entry(document: Mapping[str, Any], first: Mapping[str, Any] | None) -> Document:
    """The order as requested, PENDING from its ``createdAt`` until the first event."""
    state = _state(document)
    quantity = (first or {}).get("state", {}).get("quantity") or document.get("quantity")
    state.update(
        status="PENDING",
        quantity=quantity,
        filledQuantity="0",
        leavesQuantity=quantity,
        averagePrice=None,
        fills=[],
        rejectReason=None,
        rejectMessage=None,
        updatedAt=document.get("createdAt"),
    )
    return {
        "_id": f"{document.get('_id')}:requested",
        "orderId": document.get("_id"),
        "sequence": None,
        "type": "OrderRequested",
        "eventTime": document.get("createdAt"),
        "executionId": None,
        "lastPrice": None,
        "lastQuantity": None,
        "reason": None,
        "state": state,
    }


def refusal_entry(document: Mapping[str, Any]) -> Document | None:
    """A refusal by the broker (no exchange event ever came): REJECTED at ``updatedAt``."""
    if document.get("status") != "REJECTED" or document.get("lastSequence", -1) not in (-1, None):
        return None
    return {
        "_id": f"{document.get('_id')}:refused",
        "orderId": document.get("_id"),
        "sequence": None,
        "type": "RequestRefused",
        "eventTime": document.get("updatedAt"),
        "executionId": None,
        "lastPrice": None,
        "lastQuantity": None,
        "reason": document.get("rejectReason"),
        "state": _state(document),
    }


def _instant(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def state_at(entries: Sequence[Mapping[str, Any]], instant: datetime) -> Document | None:
    """The state after the last entry at or before ``instant`` (entries in history order);
    ``None`` before the first (the order did not exist yet)."""
    found: Document | None = None
    for entry in entries:
        if _instant(entry["eventTime"]) <= instant:
            found = dict(entry["state"])
        else:
            break
    return found
