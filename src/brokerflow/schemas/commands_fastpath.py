"""A fast decoder for the exchange's hot commands: ``PlaceOrder``, ``CancelOrder``, ``AmendOrder``.

The exchange decodes every command it matches. Full validation (``json.loads``, then pydantic with
a Python validator per decimal, symbol and timestamp: :mod:`brokerflow.schemas.base`) cost about
as much as the matching. :func:`fast_command_fields` reads the payload with msgspec structs that
mirror the three models (``forbid_unknown_fields``, the camelCase wire names, the ``type`` tag,
string lengths and enum values checked in C), applies the models' own rules to what is left
(the same ``_symbol`` and ``_to_utc`` functions; decimals as in ``PositiveDecimal``; the models'
cross-field checks) and returns the values pydantic would hold: ``decode(raw).__dict__``, key for
key, value for value and type for type.

It only ever accepts a strict subset of what the models accept; on any doubt it returns ``None``
and the caller runs :func:`brokerflow.schemas.decode`, which gives the precise
:class:`~brokerflow.errors.SchemaError`. Refused here, accepted there (and correct by that path):
snake_case keys, strings with surrounding whitespace (pydantic strips them), decimals sent as JSON
numbers or with an exponent, sign or spaces, a ``type`` key repeated or written twice in the text.
``tests/unit/test_commands_fastpath.py`` runs every example and mutations of them through both
paths.

The structs are checked against the models' fields at import: a field added to a model and not
here fails loudly (:func:`_check_mirrors`), so the models stay the one definition of each message.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec

from brokerflow.schemas.base import Message, _symbol, _to_utc
from brokerflow.schemas.fastpath import _SYMBOLS, _checked, _positive, _RefusedError
from brokerflow.schemas.orders import (
    AmendOrder,
    CancelOrder,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)

__all__ = ["FAST_COMMAND_TYPES", "fast_command_fields"]

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: A decimal as text: at most 40 characters (base.py's digit limits then hold); checked below.
_DecimalText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
_SIDES: Final = {member.value: member for member in Side}
_ORDER_TYPES: Final = {member.value: member for member in OrderType}
_TIMES_IN_FORCE: Final = {member.value: member for member in TimeInForce}


class _Wire(
    msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True, tag_field="type"
):
    #: Required: `decode` refuses a payload without it (the model alone would default it).
    schema_version: Literal[1]


class _PlaceOrder(_Wire, tag="PlaceOrder"):
    order_id: _Id
    account_id: _Id
    symbol: str
    side: Literal["BUY", "SELL"]
    order_type: Literal["LIMIT", "MARKET"]
    quantity: _DecimalText
    event_time: str
    time_in_force: Literal["GTC", "DAY", "IOC", "FOK"] = "GTC"
    price: _DecimalText | None = None
    idempotency_key: _Id | None = None


class _CancelOrder(_Wire, tag="CancelOrder"):
    order_id: _Id
    symbol: str
    event_time: str
    account_id: _Id | None = None


class _AmendOrder(_Wire, tag="AmendOrder"):
    order_id: _Id
    symbol: str
    event_time: str
    account_id: _Id | None = None
    quantity: _DecimalText | None = None
    price: _DecimalText | None = None


_MIRRORS: Final[dict[type[Message], type[_Wire]]] = {
    PlaceOrder: _PlaceOrder,
    CancelOrder: _CancelOrder,
    AmendOrder: _AmendOrder,
}
#: The message types :func:`fast_command_fields` decodes (others always return ``None``).
FAST_COMMAND_TYPES: Final = frozenset(cls.__name__ for cls in _MIRRORS)


def _check_mirrors() -> None:
    """Each struct has exactly its model's fields (type and schemaVersion aside)."""
    for model, struct in _MIRRORS.items():
        model_fields = set(model.model_fields) - {"type", "schema_version"}
        struct_fields = set(struct.__struct_fields__) - {"schema_version"}
        if model_fields != struct_fields:
            raise TypeError(
                f"{struct.__name__} does not mirror {model.__name__}: fields "
                f"{sorted(model_fields ^ struct_fields)} differ; update "
                "brokerflow.schemas.commands_fastpath"
            )


_check_mirrors()

_decoder: Final = msgspec.json.Decoder(_PlaceOrder | _CancelOrder | _AmendOrder)

#: Checked results of repeated times (symbols and decimals: the market fast path's caches).
_TIMES: dict[str, datetime] = {}


def _optional_positive(text: str | None) -> Decimal | None:
    return None if text is None else _positive(text)


def _stripped(text: str) -> str:
    """Pydantic strips surrounding whitespace (``str_strip_whitespace``): leave that to it."""
    if text.strip() != text:
        raise _RefusedError
    return text


def _optional_stripped(text: str | None) -> str | None:
    return None if text is None else _stripped(text)


def _checked_symbol(text: str) -> str:
    return _checked(text, _SYMBOLS, _symbol)  # ValueError: caught by the caller


def _utc(text: str) -> datetime:
    return _checked(text, _TIMES, _to_utc)  # ValueError: caught by the caller


def _place_order(wire: _PlaceOrder) -> dict[str, Any]:
    order_type = _ORDER_TYPES[wire.order_type]
    price = _optional_positive(wire.price)
    if (order_type is OrderType.LIMIT) == (price is None):
        raise _RefusedError  # check_price_matches_type: LIMIT needs a price, MARKET takes none
    return {
        "type": "PlaceOrder",
        "schema_version": 1,
        "order_id": _stripped(wire.order_id),
        "account_id": _stripped(wire.account_id),
        "symbol": _checked_symbol(wire.symbol),
        "side": _SIDES[wire.side],
        "order_type": order_type,
        "time_in_force": _TIMES_IN_FORCE[wire.time_in_force],
        "quantity": _positive(wire.quantity),
        "price": price,
        "idempotency_key": _optional_stripped(wire.idempotency_key),
        "event_time": _utc(wire.event_time),
    }


def _cancel_order(wire: _CancelOrder) -> dict[str, Any]:
    return {
        "type": "CancelOrder",
        "schema_version": 1,
        "order_id": _stripped(wire.order_id),
        "account_id": _optional_stripped(wire.account_id),
        "symbol": _checked_symbol(wire.symbol),
        "event_time": _utc(wire.event_time),
    }


def _amend_order(wire: _AmendOrder) -> dict[str, Any]:
    if wire.quantity is None and wire.price is None:
        raise _RefusedError  # AmendOrder needs a new quantity, a new price, or both
    return {
        "type": "AmendOrder",
        "schema_version": 1,
        "order_id": _stripped(wire.order_id),
        "account_id": _optional_stripped(wire.account_id),
        "symbol": _checked_symbol(wire.symbol),
        "quantity": _optional_positive(wire.quantity),
        "price": _optional_positive(wire.price),
        "event_time": _utc(wire.event_time),
    }


_BUILDERS: Final[dict[type[_Wire], Any]] = {
    _PlaceOrder: _place_order,
    _CancelOrder: _cancel_order,
    _AmendOrder: _amend_order,
}


def fast_command_fields(raw: bytes | bytearray | str) -> dict[str, Any] | None:
    """``decode(raw).__dict__`` for a plainly valid PlaceOrder, CancelOrder or AmendOrder.

    ``None`` for anything else (another message, or a payload the fast checks do not plainly
    accept): decode it the full way.
    """
    if raw.count(b'"type"' if not isinstance(raw, str) else '"type"') != 1:
        return None  # a repeated key: json.loads keeps the last one; let pydantic's path decide
    try:
        wire = _decoder.decode(raw)
        result: dict[str, Any] = _BUILDERS[type(wire)](wire)
    except (msgspec.DecodeError, _RefusedError, ValueError):
        return None
    return result
