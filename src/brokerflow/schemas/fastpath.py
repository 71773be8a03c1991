"""A fast decoder for the two hot market payloads, ``Trade`` and ``BestBidAsk``.

The stats flow decodes every Kafka record; pydantic with a Python validator per decimal and per
timestamp (:mod:`brokerflow.schemas.base`) was half of each tick's time. :func:`fast_decode`
parses the payload with :func:`pydantic_core.from_json` (the JSON parser ``model_validate_json``
itself uses, so UTF-8, duplicate keys and number syntax are read identically; 2.5x faster than
:func:`json.loads`), checks it with the same rules the models apply, and
builds the model with pydantic's public ``model_construct``, or ``model_copy`` of a template
built by it (:class:`ModelTemplate`; no second validation, and no private attribute of
pydantic's set by hand, so an upgrade cannot break it silently). It only
ever accepts a strict subset of what the models accept, and whatever it accepts it builds exactly
as pydantic would (equal fields, equal ``model_fields_set``); on any doubt it returns ``None``
and the caller runs the full pydantic path, which gives the precise
:class:`~brokerflow.errors.SchemaError`.

What it accepts, per field (anything else -> ``None``):

- keys: the camelCase wire names only (no snake_case names, no unknown keys); ``type`` and
  ``schemaVersion`` present, ``"Trade"``/``"BestBidAsk"`` and the integer ``1``;
- ``venue`` / ``symbol``: strings that pass the models' own checks with no surrounding
  whitespace (both are ASCII without spaces once valid), upper-cased as the models do;
- ``tradeId``: an ASCII string of 1-64 characters, no surrounding whitespace;
- decimals: ASCII strings of at most 40 characters made of digits and at most one ``.``, greater
  than zero (no sign, exponent, underscore or spaces, hence finite and within base.py's 40-digit
  limits); never JSON numbers;
- times: strings :meth:`datetime.fromisoformat` reads with a UTC offset, converted to UTC
  (``base._to_utc``'s rule);
- ``aggressorSide``: ``"BUY"``, ``"SELL"`` or null; ``updateId``: a non-negative JSON integer
  below 2**63, or null;
- ``BestBidAsk``: each side's price and quantity both present or both null, never crossed.

Repeated values (decimal strings, symbols, venues) are looked up in small bounded caches of
their checked results; a cached value is immutable (``Decimal``, ``str``), so sharing it between
models is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar

from pydantic_core import from_json

from brokerflow.schemas.base import Message, _symbol
from brokerflow.schemas.market import BestBidAsk, Trade, _venue
from brokerflow.schemas.orders import Side

__all__ = ["fast_decode", "fast_decode_best_bid_ask", "fast_decode_trade"]

_fromisoformat = datetime.fromisoformat
_T = TypeVar("_T")
_M = TypeVar("_M", bound=Message)
_SIDES: Final = {"BUY": Side.BUY, "SELL": Side.SELL, None: None}
_MAX_DECIMAL_CHARS = 40
_MAX_UPDATE_ID = 2**63

_TRADE_KEYS: Final = frozenset(
    {"type", "schemaVersion", "venue", "symbol", "tradeId", "price", "quantity"}
    | {"aggressorSide", "eventTime", "receiveTime"}
)
_TRADE_REQUIRED: Final = _TRADE_KEYS - {"aggressorSide"}
_BBA_KEYS: Final = frozenset(
    {"type", "schemaVersion", "venue", "symbol", "bidPrice", "bidQuantity", "askPrice"}
    | {"askQuantity", "updateId", "eventTime", "receiveTime"}
)
_BBA_REQUIRED: Final = _BBA_KEYS - {"updateId"}

#: Checked results of repeated strings; cleared when full (bounded memory whatever the input).
_DECIMALS: dict[str, Decimal] = {}
_SYMBOLS: dict[str, str] = {}
_VENUES: dict[str, str] = {}
_CACHE_LIMIT = 65536


class ModelTemplate(Generic[_M]):
    """Builds ``cls.model_construct(fields_set, **values)`` for one shape of payload by copying
    a template with pydantic's public ``model_copy`` (2.1 us against 5.0: ``model_construct``
    walks every field in Python).

    ``constants`` are the fields every such model has the same value for (``type``, a default
    left unset); :meth:`build` takes the others, exactly ``varying``. The template holds every
    field in declaration order, so a copy's ``repr`` and ``__dict__`` are ``model_construct``'s;
    ``model_copy`` adds the updated names to ``model_fields_set``. The tests compare the results
    with pydantic's own.
    """

    __slots__ = ("model", "varying")

    def __init__(self, cls: type[_M], fields_set: frozenset[str], constants: dict[str, Any]):
        self.varying = fields_set - constants.keys()
        values = {name: constants.get(name) for name in cls.model_fields}
        self.model: _M = cls.model_construct(set(fields_set - self.varying), **values)

    def build(self, values: dict[str, Any]) -> _M:
        """The model with these values (no validation: the caller checked them)."""
        return self.model.model_copy(update=values)


def _with_and_without(cls: type[_M], optional: str) -> tuple[ModelTemplate[_M], ModelTemplate[_M]]:
    """Templates for a payload that has every key, and for one without ``optional`` (which
    pydantic then leaves unset, at its default ``None``)."""
    every = frozenset(cls.model_fields)
    constants: dict[str, Any] = {"type": cls.__name__, "schema_version": 1}
    return (
        ModelTemplate(cls, every, constants),
        ModelTemplate(cls, every - {optional}, {**constants, optional: None}),
    )


_TRADE_WITH_SIDE, _TRADE_WITHOUT_SIDE = _with_and_without(Trade, "aggressor_side")
_BBA_WITH_UPDATE_ID, _BBA_WITHOUT_UPDATE_ID = _with_and_without(BestBidAsk, "update_id")


class _RefusedError(Exception):
    """Internal: the fast path gives up on this payload."""


def _positive(value: Any) -> Decimal:
    """``PositiveDecimal``'s result for a plain decimal string; refused otherwise."""
    known = _DECIMALS.get(value)  # TypeError for a list/dict: caught by the caller
    if known is not None:
        return known
    # ASCII digits with at most one '.', <= 40 characters: Decimal(value) is exact, finite, not
    # negative, and within base._to_decimal's digit limits; base._positive refuses zero.
    if (
        type(value) is str
        and len(value) <= _MAX_DECIMAL_CHARS
        and value.isascii()
        and value.replace(".", "", 1).isdigit()
    ):
        result = Decimal(value)
        if result:
            if len(_DECIMALS) >= _CACHE_LIMIT:
                _DECIMALS.clear()
            _DECIMALS[value] = result
            return result
    raise _RefusedError


def _positive_or_none(value: Any) -> Decimal | None:
    return None if value is None else _positive(value)


def _utc(value: Any) -> datetime:
    """``UtcDatetime``'s result (base._to_utc) for an ISO string with an offset."""
    if type(value) is not str:
        raise _RefusedError
    parsed = _fromisoformat(value)  # ValueError: caught by the caller
    tz = parsed.tzinfo
    if tz is UTC:
        return parsed
    if tz is None or parsed.utcoffset() is None:
        raise _RefusedError
    return parsed.astimezone(UTC)  # OverflowError: caught by the caller


def _checked(value: Any, cache: dict[str, _T], check: Callable[[str], _T]) -> _T:
    """``check(value)`` (a model's own rule: Symbol, Venue, UtcDatetime...) for an ASCII string
    pydantic would not strip, remembered in ``cache``."""
    known = cache.get(value)  # TypeError for a list/dict: caught by the caller
    if known is not None:
        return known
    if type(value) is not str or not value or value != value.strip() or not value.isascii():
        raise _RefusedError
    result = check(value)  # ValueError: caught by the caller
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[value] = result
    return result


def _keys_ok(payload: dict[str, Any], keys: frozenset[str], required: frozenset[str]) -> bool:
    names = payload.keys()
    if names == keys:
        return True
    return required <= names and names <= keys


def _times(payload: dict[str, Any]) -> tuple[datetime, datetime]:
    event, receive = payload["eventTime"], payload["receiveTime"]
    event_time = _utc(event)
    return event_time, (event_time if receive == event else _utc(receive))


def _trade(payload: Any) -> Trade:
    if (
        type(payload) is not dict
        or payload.get("type") != "Trade"
        or not _keys_ok(payload, _TRADE_KEYS, _TRADE_REQUIRED)
    ):
        raise _RefusedError
    version = payload["schemaVersion"]
    trade_id = payload["tradeId"]
    if (
        type(version) is not int
        or version != 1
        or type(trade_id) is not str
        or not 1 <= len(trade_id) <= 64
        or not trade_id.isascii()
        or trade_id != trade_id.strip()
    ):
        raise _RefusedError
    event_time, receive_time = _times(payload)
    values = {
        "venue": _checked(payload["venue"], _VENUES, _venue),
        "symbol": _checked(payload["symbol"], _SYMBOLS, _symbol),
        "trade_id": trade_id,
        "price": _positive(payload["price"]),
        "quantity": _positive(payload["quantity"]),
        "event_time": event_time,
        "receive_time": receive_time,
    }
    if "aggressorSide" in payload:
        # KeyError/TypeError: caught by the caller
        values["aggressor_side"] = _SIDES[payload["aggressorSide"]]
        return _TRADE_WITH_SIDE.build(values)
    return _TRADE_WITHOUT_SIDE.build(values)


def _best_bid_ask(payload: Any) -> BestBidAsk:
    if (
        type(payload) is not dict
        or payload.get("type") != "BestBidAsk"
        or not _keys_ok(payload, _BBA_KEYS, _BBA_REQUIRED)
    ):
        raise _RefusedError
    version = payload["schemaVersion"]
    if type(version) is not int or version != 1:
        raise _RefusedError
    bid_price = _positive_or_none(payload["bidPrice"])
    bid_quantity = _positive_or_none(payload["bidQuantity"])
    ask_price = _positive_or_none(payload["askPrice"])
    ask_quantity = _positive_or_none(payload["askQuantity"])
    if (bid_price is None) != (bid_quantity is None) or (ask_price is None) != (
        ask_quantity is None
    ):
        raise _RefusedError
    if bid_price is not None and ask_price is not None and bid_price > ask_price:
        raise _RefusedError
    event_time, receive_time = _times(payload)
    values = {
        "venue": _checked(payload["venue"], _VENUES, _venue),
        "symbol": _checked(payload["symbol"], _SYMBOLS, _symbol),
        "bid_price": bid_price,
        "bid_quantity": bid_quantity,
        "ask_price": ask_price,
        "ask_quantity": ask_quantity,
        "event_time": event_time,
        "receive_time": receive_time,
    }
    if "updateId" in payload:
        update_id = payload["updateId"]
        if update_id is not None and (
            type(update_id) is not int or not 0 <= update_id < _MAX_UPDATE_ID
        ):
            raise _RefusedError
        values["update_id"] = update_id
        return _BBA_WITH_UPDATE_ID.build(values)
    return _BBA_WITHOUT_UPDATE_ID.build(values)


def fast_decode_trade(raw: bytes | bytearray | str) -> Trade | None:
    """``Trade.model_validate_json(raw)`` for a plainly valid trade; ``None`` otherwise."""
    try:
        return _trade(from_json(raw))
    except Exception:  # any doubt: the caller runs pydantic
        return None


def fast_decode_best_bid_ask(raw: bytes | bytearray | str) -> BestBidAsk | None:
    """``BestBidAsk.model_validate_json(raw)`` for a plainly valid quote; ``None`` otherwise."""
    try:
        return _best_bid_ask(from_json(raw))
    except Exception:  # any doubt: the caller runs pydantic
        return None


def fast_decode(raw: bytes | bytearray | str) -> Trade | BestBidAsk | None:
    """The ``Trade`` or ``BestBidAsk`` the payload's ``type`` names, exactly as pydantic builds it.

    ``None`` for anything else (another type, or any payload the fast checks do not plainly
    accept): decode it the full way.
    """
    try:
        payload = from_json(raw)
        kind = payload.get("type") if type(payload) is dict else None
        if kind == "Trade":
            return _trade(payload)
        if kind == "BestBidAsk":
            return _best_bid_ask(payload)
    except Exception:  # any doubt: the caller runs pydantic
        pass
    return None
