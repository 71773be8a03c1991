"""Ticks in our own canonical wire form, decoded straight into the windows' facts.

The stats flow reads ``Trade``/``BestBidAsk`` records that our producers wrote with
``to_json_bytes`` (pydantic's ``model_dump_json``): keys in declaration order, no spaces,
decimals as plain strings, times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. For a record in exactly that
form, :class:`FactsDecoder` skips the JSON parser and the model: one anchored regular expression
checks the whole document and captures the field values, and the windows receive a
:data:`~brokerflow.windows.TickFacts` tuple. It costs a third of
:func:`brokerflow.schemas.fastpath.fast_decode` (which parses JSON, checks every field and builds
the model).

It only ever accepts a subset of what the models accept, and returns the facts of the model
pydantic would build; anything else returns ``None`` and the caller takes the model path
(fast decode, then pydantic, then the dead-letter stream):

- the document must match the regex in full (so it is valid JSON with exactly those keys, in
  that order, and strings without escapes);
- ``venue``/``symbol``: upper case, and only values the models already accepted: an unknown
  pair is decoded once by :func:`~brokerflow.schemas.fastpath.fast_decode` and remembered if
  the model kept it unchanged (the rules stay in one place, the models);
- decimals: ASCII digits with at most one point, at most 40 characters, not zero (the models'
  ``PositiveDecimal`` accepts all of them, with the same ``Decimal`` value);
- times: must be read by :meth:`datetime.fromisoformat` (the models' own parser), ``Z`` = UTC;
- ``updateId``: null or a JSON integer below 2**63; quotes: each side's price and quantity both
  present or both null, never crossed.

The caches (checked strings -> values) are bounded: cleared when full.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from brokerflow.schemas.fastpath import fast_decode
from brokerflow.schemas.orders import Side
from brokerflow.windows import TickFacts

__all__ = ["FactsDecoder"]

_DECIMAL = rb'"([0-9]{1,40}(?:\.[0-9]{1,39})?)"'
_OPTIONAL_DECIMAL = rb'(?:"([0-9]{1,40}(?:\.[0-9]{1,39})?)"|null)'
_TIME = rb'"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)"'
_NAME = rb'"([A-Z0-9_.-]{1,32})"'

_TRADE: Final = re.compile(
    rb'\{"type":"Trade","schemaVersion":1,"venue":' + _NAME + rb',"symbol":' + _NAME
    + rb',"tradeId":"([A-Za-z0-9_.:-]{1,64})","price":' + _DECIMAL + rb',"quantity":' + _DECIMAL
    + rb',"aggressorSide":(?:"(BUY|SELL)"|null),"eventTime":' + _TIME + rb',"receiveTime":'
    + _TIME + rb"\}"
)  # fmt: skip
_QUOTE: Final = re.compile(
    rb'\{"type":"BestBidAsk","schemaVersion":1,"venue":' + _NAME + rb',"symbol":' + _NAME
    + rb',"bidPrice":' + _OPTIONAL_DECIMAL + rb',"bidQuantity":' + _OPTIONAL_DECIMAL
    + rb',"askPrice":' + _OPTIONAL_DECIMAL + rb',"askQuantity":' + _OPTIONAL_DECIMAL
    + rb',"updateId":(null|0|[1-9][0-9]{0,18}),"eventTime":' + _TIME + rb',"receiveTime":'
    + _TIME + rb"\}"
)  # fmt: skip
#: ``{"type":"`` is 9 bytes: byte 9 tells a trade from a quote.
_T: Final = ord("T")
_MAX_UPDATE_ID = 2**63
_SIDES: Final = {b"BUY": Side.BUY, b"SELL": Side.SELL, None: None}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_CACHE_LIMIT = 65536


class _RefusedError(Exception):
    """Internal: not for the fast path."""


class FactsDecoder:
    """Decodes canonical ticks into ``(symbol, facts)``; ``None``: take the model path."""

    def __init__(self) -> None:
        #: (venue bytes, symbol bytes) -> (venue, symbol), both accepted unchanged by a model.
        self._names: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        self._decimals: dict[bytes, Decimal] = {}
        self._times: dict[bytes, int] = {}

    def decode(self, raw: bytes) -> tuple[str, TickFacts] | None:
        is_trade = len(raw) > 9 and raw[9] == _T
        match = (_TRADE if is_trade else _QUOTE).fullmatch(raw)
        if match is None:
            return None
        # Cache hits inline (no call); a miss checks the value (or refuses the record).
        names, decimals, times = self._names, self._decimals, self._times
        try:
            if is_trade:
                venue_b, symbol_b, trade_id, price, quantity, side, event, receive = match.groups()
                venue, symbol = names.get((venue_b, symbol_b)) or self._learn(raw)
                when = times.get(event) or self._time(event)
                if receive != event and receive not in times:
                    self._time(receive)
                ident = trade_id.decode()
                return symbol, (
                    True,
                    when,
                    venue,
                    symbol,
                    decimals.get(price) or self._decimal(price),
                    decimals.get(quantity) or self._decimal(quantity),
                    _SIDES[side],
                    (when, len(ident) if ident.isdigit() else 0, ident),
                )
            venue_b, symbol_b, bid_b, bid_qty, ask_b, ask_qty, update, event, receive = (
                match.groups()
            )
            if len(update) == 19 and int(update) >= _MAX_UPDATE_ID:
                return None
            venue, symbol = names.get((venue_b, symbol_b)) or self._learn(raw)
            when = times.get(event) or self._time(event)
            if receive != event and receive not in times:
                self._time(receive)
            if (bid_b is None) != (bid_qty is None) or (ask_b is None) != (ask_qty is None):
                return None
            bid = ask = None
            if bid_b is not None:
                bid = decimals.get(bid_b) or self._decimal(bid_b)
                if bid_qty not in decimals:
                    self._decimal(bid_qty)
            if ask_b is not None:
                ask = decimals.get(ask_b) or self._decimal(ask_b)
                if ask_qty not in decimals:
                    self._decimal(ask_qty)
            spread = None
            if bid is not None and ask is not None:
                if bid > ask:
                    return None  # crossed: the models refuse it (the dead letter says why)
                spread = ask - bid
            return symbol, (False, when, venue, symbol, spread, None, None, None)
        except _RefusedError:
            return None

    def _learn(self, raw: bytes) -> tuple[str, str]:
        """Check an unknown venue/symbol pair with the models' own rules (once per pair)."""
        model = fast_decode(raw)
        if model is None:
            raise _RefusedError
        match = (_TRADE if raw[9] == _T else _QUOTE).fullmatch(raw)
        assert match is not None  # decode matched it
        venue_b, symbol_b = match.group(1), match.group(2)
        if model.venue != venue_b.decode() or model.symbol != symbol_b.decode():
            raise _RefusedError  # the model changed it (e.g. upper-cased): not canonical
        if len(self._names) >= _CACHE_LIMIT:
            self._names.clear()
        pair = self._names[(venue_b, symbol_b)] = (model.venue, model.symbol)
        return pair

    def _decimal(self, text: bytes) -> Decimal:
        known = self._decimals.get(text)
        if known is not None:
            return known
        if len(text) > 40:
            raise _RefusedError
        value = Decimal(text.decode())
        if not value:
            raise _RefusedError  # PositiveDecimal refuses zero
        if len(self._decimals) >= _CACHE_LIMIT:
            self._decimals.clear()
        self._decimals[text] = value
        return value

    def _time(self, text: bytes) -> int:
        known = self._times.get(text)
        if known is not None:
            return known
        try:
            moment = datetime.fromisoformat(text.decode())
        except ValueError:
            raise _RefusedError from None
        micros = (moment - _EPOCH) // _US
        if len(self._times) >= _CACHE_LIMIT:
            self._times.clear()
        self._times[text] = micros
        return micros
