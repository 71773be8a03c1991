"""``brokerflow audit ORDER_ID [--at TIME]``: an order's history from the event log itself.

Reads ``order-events-v1`` (``read_committed``, every partition, or the records of one symbol's
key with ``--symbol``), keeps the order's events and folds them with the projector's own folds
(:mod:`.history`), so it needs no MongoDB and answers what the log says, not what a read model
holds. The history starts at the exchange's acceptance: the request before it lives on
``account-commands-v1``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from brokerflow.exchange.io import read_topic
from brokerflow.projections.folds import Document
from brokerflow.projections.history import history_entries, state_at
from brokerflow.schemas import decode
from brokerflow.schemas.orders import OrderAccepted
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = ["audit_lines", "order_log_history"]


async def order_log_history(
    settings: Settings, order_id: str, symbol: str | None = None
) -> list[Document]:
    """The order's history entries, from the topic (empty when the log has no event of it)."""
    marker = json.dumps({"orderId": order_id}, separators=(",", ":"))[1:-1].encode()
    records = await read_topic(settings, catalog(settings).order_events.name, timeout_s=60)
    key = None if symbol is None else symbol.upper().encode()
    events = [
        decode(record.value)
        for record in records
        if marker in record.value and (key is None or record.key == key)
    ]
    events = [e for e in events if e.__dict__.get("order_id") == order_id]
    if not events:
        return []
    events.sort(key=lambda event: event.__dict__["sequence"])
    base: Document = {
        "_id": order_id,
        "orderId": order_id,
        "symbol": events[0].__dict__["symbol"],
        "accountId": events[0].__dict__.get("account_id"),
        "status": "PENDING",
        "filledQuantity": "0",
        "leavesQuantity": "0",
        "fills": [],
        "lastSequence": -1,
    }
    accepted = next((e for e in events if isinstance(e, OrderAccepted)), None)
    if accepted is not None:
        base.update(
            side=accepted.side.value,
            type=accepted.order_type.value,
            timeInForce=accepted.time_in_force.value,
        )
    return history_entries(base, events)


def _row(entry: Document) -> str:
    state = entry["state"]
    fill = (
        f"  {entry['lastQuantity']} @ {entry['lastPrice']} ({entry['executionId']})"
        if entry.get("lastQuantity")
        else ""
    )
    reason = f"  reason {entry['reason']}" if entry.get("reason") else ""
    return (
        f"{entry['eventTime']}  #{entry['sequence']:<6} {entry['type']:<22} "
        f"{state['status']:<17} filled {state['filledQuantity']} open "
        f"{state['leavesQuantity']}{fill}{reason}"
    )


def audit_lines(
    order_id: str, entries: list[Document], at: datetime | None, *, as_json: bool
) -> list[str]:
    """What the command prints: the history, then the state at ``at`` when asked."""
    state = None if at is None else state_at(entries, at)
    if as_json:
        body: dict[str, Any] = {"orderId": order_id, "changes": entries}
        if at is not None:
            body["at"] = at.isoformat()
            body["state"] = state
        return [json.dumps(body, indent=2, default=str)]
    lines = [f"order {order_id}: {len(entries)} state changes on the log"]
    lines += [_row(entry) for entry in entries]
    if at is not None:
        if state is None:
            lines.append(f"at {at.isoformat()}: no event yet (the exchange had not accepted it)")
        else:
            lines.append(
                f"at {at.isoformat()}: {state['status']}, filled {state['filledQuantity']}, "
                f"open {state['leavesQuantity']}, average price {state['averagePrice']}"
            )
    return lines
