"""A fast path for the two Binance frames that are nearly all the traffic: plain trades and
plain book tickers.

:func:`~brokerflow.connectors.binance_ws.parse_binance_frame` validates each frame with the
strict wire model, then builds the ``Trade``/``BestBidAsk`` with a second pydantic validation:
about half of the ingest flow's time per tick. :func:`fast_parse` reads the frame with
:func:`pydantic_core.from_json`, checks it with the wire model's and the domain model's rules, and
builds the record with pydantic's public ``model_copy`` of a template
(:class:`~brokerflow.schemas.fastpath.ModelTemplate`), as
:mod:`brokerflow.schemas.fastpath` does for our own payloads (whose checked-value caches and
decimal rule it shares). It accepts a strict subset of what the full path turns into a record,
and builds exactly that record (equal fields, equal ``model_fields_set``, equal JSON); anything
else (another event, a control message, a frame the full path would dead-letter, any doubt)
gives ``None`` and the full path runs. ``tests/unit/connectors/test_binance_fast.py`` runs the
sample tape and mutations of it through both.

Accepted, on top of the wire model's own rules (field types exact: an id is an integer, never a
boolean; prices are strings):

- the combined-stream wrapper ``{"stream": "<symbol>@trade|bookTicker", "data": {...}}`` whose
  symbol is the payload's, or a bare payload whose shape names it (``"e": "trade"``, or a book
  ticker's keys);
- prices and quantities that :mod:`brokerflow.schemas.fastpath` accepts (plain ASCII digits with
  at most one ``.``, above zero): an empty book side (``"0.00000000"``) goes the full way;
- event times within ``datetime``'s range; a receive time in UTC; a book ticker not crossed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from pydantic_core import from_json

from brokerflow.schemas.base import _symbol
from brokerflow.schemas.fastpath import _SYMBOLS, ModelTemplate, _checked, _positive
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side

from ._frames import MAX_EPOCH_MILLIS, ParseResult, from_epoch_millis

__all__ = ["fast_parse"]

_VENUE: Final = "BINANCE"
_MAX_UPDATE_ID: Final = 2**63
_MAX_ID_DIGITS: Final = 64
_TRADE_REQUIRED: Final = frozenset(("e", "E", "s", "t", "p", "q", "T", "m"))
_TICKER_REQUIRED: Final = frozenset(("u", "s", "b", "B", "a", "A"))
#: What ``to_domain`` passes to the models (so pydantic records these as set, not type).
_TRADE: Final = ModelTemplate(
    Trade,
    frozenset(
        (
            "venue",
            "symbol",
            "trade_id",
            "price",
            "quantity",
            "aggressor_side",
            "event_time",
            "receive_time",
        )
    ),
    {"type": "Trade", "schema_version": 1},
)
_TICKER: Final = ModelTemplate(
    BestBidAsk,
    frozenset(
        (
            "venue",
            "symbol",
            "bid_price",
            "bid_quantity",
            "ask_price",
            "ask_quantity",
            "update_id",
            "event_time",
            "receive_time",
        )
    ),
    {"type": "BestBidAsk", "schema_version": 1},
)


class _RefusedError(Exception):
    """Internal: this frame goes the full way."""


def _millis(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_EPOCH_MILLIS:
        raise _RefusedError
    return value


def _whole(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _RefusedError
    return value


def _trade(payload: dict[str, Any], receive_time: datetime) -> Trade:
    if not payload.keys() >= _TRADE_REQUIRED or payload["e"] != "trade":
        raise _RefusedError
    _millis(payload["E"])
    trade_id = _whole(payload["t"])
    maker = payload["m"]
    if type(maker) is not bool:
        raise _RefusedError
    best_match = payload.get("M")
    if best_match is not None and type(best_match) is not bool:
        raise _RefusedError
    for name in ("b", "a"):  # Binance.US's order ids
        order_id = payload.get(name)
        if order_id is not None and type(order_id) is not int:
            raise _RefusedError
    text_id = str(trade_id)
    if len(text_id) > _MAX_ID_DIGITS:
        raise _RefusedError
    values = {
        "venue": _VENUE,
        "symbol": _checked(payload["s"], _SYMBOLS, _symbol),
        "trade_id": text_id,
        "price": _positive(payload["p"]),
        "quantity": _positive(payload["q"]),
        "aggressor_side": Side.SELL if maker else Side.BUY,
        "event_time": from_epoch_millis(_millis(payload["T"])),
        "receive_time": receive_time,
    }
    return _TRADE.build(values)


def _book_ticker(payload: dict[str, Any], receive_time: datetime) -> BestBidAsk:
    if not payload.keys() >= _TICKER_REQUIRED:
        raise _RefusedError
    event = payload.get("e")
    if event is not None and event != "bookTicker":
        raise _RefusedError
    update_id = _whole(payload["u"])
    if update_id >= _MAX_UPDATE_ID:
        raise _RefusedError
    event_millis = payload.get("E")
    event_time = receive_time if event_millis is None else from_epoch_millis(_millis(event_millis))
    bid_price, ask_price = _positive(payload["b"]), _positive(payload["a"])
    if bid_price > ask_price:
        raise _RefusedError  # a crossed quote: the full path dead-letters it
    values = {
        "venue": _VENUE,
        "symbol": _checked(payload["s"], _SYMBOLS, _symbol),
        "bid_price": bid_price,
        "bid_quantity": _positive(payload["B"]),
        "ask_price": ask_price,
        "ask_quantity": _positive(payload["A"]),
        "update_id": update_id,
        "event_time": event_time,
        "receive_time": receive_time,
    }
    return _TICKER.build(values)


def _parse(raw: str, receive_time: datetime) -> ParseResult:
    if receive_time.tzinfo is not UTC:
        raise _RefusedError
    message = from_json(raw)
    if type(message) is not dict:
        raise _RefusedError
    if "stream" in message and "data" in message:
        stream = message["stream"]
        payload = message["data"]
        if type(stream) is not str or type(payload) is not dict or "id" in payload:
            raise _RefusedError  # "id": a control reply, which the full path knows
        wire_symbol, _, channel = stream.partition("@")
        if channel == "trade":
            record: Trade | BestBidAsk = _trade(payload, receive_time)
        elif channel == "bookTicker":
            record = _book_ticker(payload, receive_time)
        else:
            raise _RefusedError
        if type(payload["s"]) is not str or wire_symbol != payload["s"].lower():
            raise _RefusedError
        return ParseResult(records=(record,))
    payload = message
    if "id" in payload:
        raise _RefusedError  # a control reply: the full path knows them
    event = payload.get("e")
    if event == "trade":
        return ParseResult(records=(_trade(payload, receive_time),))
    if event == "bookTicker" or ("e" not in payload and payload.keys() >= _TICKER_REQUIRED):
        return ParseResult(records=(_book_ticker(payload, receive_time),))
    raise _RefusedError


def fast_parse(raw: str, receive_time: datetime) -> ParseResult | None:
    """``parse_binance_frame(raw, receive_time)`` for a plainly valid trade or book ticker;
    ``None`` otherwise (then call it)."""
    try:
        return _parse(raw, receive_time)
    except Exception:  # any doubt: the full path decides, with its precise dead letter
        return None
