"""Encoders at the edge: engine event tuples to wire dicts and to compact JSON lines.

:func:`to_wire` gives the camelCase dict of the wire schemas in :mod:`brokerflow.schemas.orders`
and :mod:`brokerflow.schemas.trades` (the tests validate every event of a random tape against the
pydantic models and check that a model round trip gives back the same dict). Keys come ``type``
first, then the models' field order; defaults such as ``receiveTime: null`` are included, so the
dict is what the model itself would dump.

:func:`to_json` formats the same dict as a compact JSON line by hand: it is byte-identical to
``json.dumps(to_wire(event), separators=(",", ":"))`` and several times faster, which is what keeps
``brokerflow match`` cheap per event. Ids, times and free text are escaped with the json module's
own ASCII escaper; symbols, sides, decimals and sequence numbers need no escaping.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable, Iterable
from typing import Any

from brokerflow.matching.commands import BUY
from brokerflow.matching.events import (
    ORDER_ACCEPTED,
    ORDER_AMENDED,
    ORDER_CANCELLED,
    ORDER_DUPLICATE_IGNORED,
    ORDER_EXPIRED,
    ORDER_FILLED,
    ORDER_PARTIALLY_FILLED,
    ORDER_REJECTED,
    TRADE_EXECUTED,
    Event,
)

__all__ = ["JSON_ENCODERS", "to_json", "to_json_lines", "to_wire"]

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _quote_optional(text: str | None) -> str:
    return "null" if text is None else _quote(text)


def to_wire(event: Event) -> dict[str, Any]:
    """The wire dict (camelCase, decimals as strings) of one engine event."""
    return _TO_WIRE[event[0]](event)


def to_json(event: Event) -> str:
    """One compact JSON line (without newline), equal to ``json.dumps`` of :func:`to_wire`."""
    return JSON_ENCODERS[event[0]](event)


def to_json_lines(events: Iterable[Event]) -> list[str]:
    """:func:`to_json` of each event (no newlines): the batch form the replay uses."""
    encoders = JSON_ENCODERS
    return [encoders[event[0]](event) for event in events]


# --- dicts ---------------------------------------------------------------------------------


def _order_head(
    event: Event, status: str, account_id: str | None, filled: int, leaves: int
) -> dict[str, Any]:
    kind, codec, sequence, event_time, order_id = event[:5]
    quantities = codec.quantity_texts
    return {
        "type": kind,
        "schemaVersion": 1,
        "orderId": order_id,
        "accountId": account_id,
        "symbol": codec.symbol,
        "status": status,
        "sequence": sequence,
        "filledQuantity": quantities[filled],
        "leavesQuantity": quantities[leaves],
        "eventTime": event_time,
        "receiveTime": None,
    }


def _accepted_dict(event: Event) -> dict[str, Any]:
    codec = event[1]
    side, order_type, time_in_force, quantity, price = event[6:11]
    wire = _order_head(event, "OPEN", event[5], 0, quantity)
    wire["side"] = str(side)
    wire["orderType"] = str(order_type)
    wire["timeInForce"] = str(time_in_force)
    wire["quantity"] = codec.quantity_texts[quantity]
    wire["price"] = None if price is None else codec.price_texts[price]
    return wire


def _rejected_dict(event: Event) -> dict[str, Any]:
    wire = _order_head(event, "REJECTED", event[5], event[6], event[7])
    wire["reason"] = str(event[8])
    wire["detail"] = event[9]
    return wire


def _fill_dict(event: Event) -> dict[str, Any]:
    kind, trade, offset = event
    _, codec, sequence, event_time, number, price, quantity = trade[:7]
    if offset == 1:  # the maker's fill
        order_id, account_id, filled, leaves = trade[9], trade[11], trade[12], trade[13]
    else:
        order_id, account_id, filled, leaves = trade[8], trade[10], trade[14], trade[15]
    texts = codec.quantity_texts
    return {
        "type": kind,
        "schemaVersion": 1,
        "orderId": order_id,
        "accountId": account_id,
        "symbol": codec.symbol,
        "status": "FILLED" if kind == ORDER_FILLED else "PARTIALLY_FILLED",
        "sequence": sequence + offset,
        "filledQuantity": texts[filled],
        "leavesQuantity": texts[leaves],
        "eventTime": event_time,
        "receiveTime": None,
        "tradeId": codec.trade_id(number),
        "lastPrice": codec.price_texts[price],
        "lastQuantity": texts[quantity],
    }


def _cancelled_dict(event: Event) -> dict[str, Any]:
    wire = _order_head(event, "CANCELLED", event[5], event[6], 0)
    wire["reason"] = str(event[8])
    wire["cancelledQuantity"] = event[1].quantity_texts[event[7]]
    return wire


def _expired_dict(event: Event) -> dict[str, Any]:
    wire = _order_head(event, "EXPIRED", event[5], event[6], 0)
    wire["expiredQuantity"] = event[1].quantity_texts[event[7]]
    return wire


def _amended_dict(event: Event) -> dict[str, Any]:
    codec = event[1]
    status = "PARTIALLY_FILLED" if event[6] else "OPEN"
    wire = _order_head(event, status, event[5], event[6], event[7])
    wire["quantity"] = codec.quantity_texts[event[8]]
    wire["price"] = codec.price_texts[event[9]]
    wire["keptPriority"] = event[10]
    return wire


def _duplicate_dict(event: Event) -> dict[str, Any]:
    return {
        "type": ORDER_DUPLICATE_IGNORED,
        "schemaVersion": 1,
        "orderId": event[4],
        "symbol": event[1].symbol,
        "command": event[5],
        "sequence": event[2],
        "eventTime": event[3],
    }


def _trade_dict(event: Event) -> dict[str, Any]:
    _, codec, sequence, event_time, number, price, quantity, aggressor = event[:8]
    taker_id, maker_id, taker_account, maker_account = event[8:12]
    taker_buys = aggressor == BUY
    return {
        "type": TRADE_EXECUTED,
        "schemaVersion": 1,
        "tradeId": codec.trade_id(number),
        "symbol": codec.symbol,
        "sequence": sequence,
        "price": codec.price_texts[price],
        "quantity": codec.quantity_texts[quantity],
        "aggressorSide": str(aggressor),
        "takerOrderId": taker_id,
        "makerOrderId": maker_id,
        "buyOrderId": taker_id if taker_buys else maker_id,
        "sellOrderId": maker_id if taker_buys else taker_id,
        "buyAccountId": taker_account if taker_buys else maker_account,
        "sellAccountId": maker_account if taker_buys else taker_account,
        "eventTime": event_time,
    }


_TO_WIRE: dict[str, Callable[[Event], dict[str, Any]]] = {
    ORDER_ACCEPTED: _accepted_dict,
    ORDER_REJECTED: _rejected_dict,
    ORDER_PARTIALLY_FILLED: _fill_dict,
    ORDER_FILLED: _fill_dict,
    ORDER_CANCELLED: _cancelled_dict,
    ORDER_EXPIRED: _expired_dict,
    ORDER_AMENDED: _amended_dict,
    ORDER_DUPLICATE_IGNORED: _duplicate_dict,
    TRADE_EXECUTED: _trade_dict,
}


# --- compact JSON lines --------------------------------------------------------------------
#
# Each formatter writes the keys of the matching dict builder above, in the same order.


def _head_json(
    kind: str,
    order_id: str,
    account_id: str | None,
    symbol: str,
    status: str,
    sequence: int,
    filled: str,
    leaves: str,
    event_time: str,
) -> str:
    return (
        f'{{"type":"{kind}","schemaVersion":1,"orderId":{_quote(order_id)},'
        f'"accountId":{_quote_optional(account_id)},"symbol":"{symbol}","status":"{status}",'
        f'"sequence":{sequence},"filledQuantity":"{filled}","leavesQuantity":"{leaves}",'
        f'"eventTime":{_quote(event_time)},"receiveTime":null'
    )


def _accepted_json(event: Event) -> str:
    _, codec, sequence, event_time, order_id, account_id = event[:6]
    side, order_type, time_in_force, quantity, price = event[6:11]
    texts = codec.quantity_texts
    quantity_text = texts[quantity]
    price_text = "null" if price is None else f'"{codec.price_texts[price]}"'
    return (
        f'{{"type":"OrderAccepted","schemaVersion":1,"orderId":{_quote(order_id)},'
        f'"accountId":{_quote_optional(account_id)},"symbol":"{codec.symbol}","status":"OPEN",'
        f'"sequence":{sequence},"filledQuantity":"{texts[0]}","leavesQuantity":"{quantity_text}",'
        f'"eventTime":{_quote(event_time)},"receiveTime":null,"side":"{side}",'
        f'"orderType":"{order_type}","timeInForce":"{time_in_force}",'
        f'"quantity":"{quantity_text}","price":{price_text}}}'
    )


def _rejected_json(event: Event) -> str:
    kind, codec, sequence, event_time, order_id, account_id, filled, leaves, reason, detail = event[
        :10
    ]
    texts = codec.quantity_texts
    head = _head_json(
        kind,
        order_id,
        account_id,
        codec.symbol,
        "REJECTED",
        sequence,
        texts[filled],
        texts[leaves],
        event_time,
    )
    return f'{head},"reason":{_quote(reason)},"detail":{_quote(detail)}}}'


def _fill_json(event: Event) -> str:
    kind, trade, offset = event
    _, codec, sequence, event_time, number, price, quantity = trade[:7]
    if offset == 1:  # the maker's fill
        order_id, account_id, filled, leaves = trade[9], trade[11], trade[12], trade[13]
    else:
        order_id, account_id, filled, leaves = trade[8], trade[10], trade[14], trade[15]
    texts = codec.quantity_texts
    return (
        f'{{"type":"{kind}","schemaVersion":1,"orderId":{_quote(order_id)},'
        f'"accountId":{_quote_optional(account_id)},"symbol":"{codec.symbol}",'
        f'"status":"{"FILLED" if leaves == 0 else "PARTIALLY_FILLED"}",'
        f'"sequence":{sequence + offset},'
        f'"filledQuantity":"{texts[filled]}","leavesQuantity":"{texts[leaves]}",'
        f'"eventTime":{_quote(event_time)},"receiveTime":null,'
        f'"tradeId":"{codec.trade_id_prefix}{number}","lastPrice":"{codec.price_texts[price]}",'
        f'"lastQuantity":"{texts[quantity]}"}}'
    )


def _cancelled_json(event: Event) -> str:
    kind, codec, sequence, event_time, order_id, account_id, filled, cancelled, reason = event
    texts = codec.quantity_texts
    head = _head_json(
        kind,
        order_id,
        account_id,
        codec.symbol,
        "CANCELLED",
        sequence,
        texts[filled],
        texts[0],
        event_time,
    )
    return f'{head},"reason":{_quote(reason)},"cancelledQuantity":"{texts[cancelled]}"}}'


def _expired_json(event: Event) -> str:
    kind, codec, sequence, event_time, order_id, account_id, filled, expired = event
    texts = codec.quantity_texts
    head = _head_json(
        kind,
        order_id,
        account_id,
        codec.symbol,
        "EXPIRED",
        sequence,
        texts[filled],
        texts[0],
        event_time,
    )
    return f'{head},"expiredQuantity":"{texts[expired]}"}}'


def _amended_json(event: Event) -> str:
    kind, codec, sequence, event_time, order_id, account_id, filled, leaves = event[:8]
    quantity, price, kept_priority = event[8:11]
    texts = codec.quantity_texts
    head = _head_json(
        kind,
        order_id,
        account_id,
        codec.symbol,
        "PARTIALLY_FILLED" if filled else "OPEN",
        sequence,
        texts[filled],
        texts[leaves],
        event_time,
    )
    return (
        f'{head},"quantity":"{texts[quantity]}","price":"{codec.price_texts[price]}",'
        f'"keptPriority":{"true" if kept_priority else "false"}}}'
    )


def _duplicate_json(event: Event) -> str:
    kind, codec, sequence, event_time, order_id, command = event
    return (
        f'{{"type":"{kind}","schemaVersion":1,"orderId":{_quote(order_id)},'
        f'"symbol":"{codec.symbol}","command":{_quote(command)},"sequence":{sequence},'
        f'"eventTime":{_quote(event_time)}}}'
    )


def _trade_json(event: Event) -> str:
    kind, codec, sequence, event_time, number, price, quantity, aggressor = event[:8]
    taker_id = _quote(event[8])
    maker_id = _quote(event[9])
    taker_account = _quote_optional(event[10])
    maker_account = _quote_optional(event[11])
    if aggressor == BUY:
        buy_id, sell_id = taker_id, maker_id
        buy_account, sell_account = taker_account, maker_account
    else:
        buy_id, sell_id = maker_id, taker_id
        buy_account, sell_account = maker_account, taker_account
    return (
        f'{{"type":"{kind}","schemaVersion":1,"tradeId":"{codec.trade_id_prefix}{number}",'
        f'"symbol":"{codec.symbol}","sequence":{sequence},"price":"{codec.price_texts[price]}",'
        f'"quantity":"{codec.quantity_texts[quantity]}","aggressorSide":"{aggressor}",'
        f'"takerOrderId":{taker_id},"makerOrderId":{maker_id},"buyOrderId":{buy_id},'
        f'"sellOrderId":{sell_id},"buyAccountId":{buy_account},"sellAccountId":{sell_account},'
        f'"eventTime":{_quote(event_time)}}}'
    )


#: ``to_json`` by event type, for loops that encode many events (one lookup, one call each).
JSON_ENCODERS: dict[str, Callable[[Event], str]] = {
    ORDER_ACCEPTED: _accepted_json,
    ORDER_REJECTED: _rejected_json,
    ORDER_PARTIALLY_FILLED: _fill_json,
    ORDER_FILLED: _fill_json,
    ORDER_CANCELLED: _cancelled_json,
    ORDER_EXPIRED: _expired_json,
    ORDER_AMENDED: _amended_json,
    ORDER_DUPLICATE_IGNORED: _duplicate_json,
    TRADE_EXECUTED: _trade_json,
}
