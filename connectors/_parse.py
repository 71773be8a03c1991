"""The one parse step that live feeds and tape replays share: ``parse_frame``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from brokerflow.errors import ConfigError
from brokerflow.metrics import DEAD_LETTERS

from . import binance_ws, brapi
from ._frames import ParseResult

__all__ = ["VENDORS", "parse_frame"]

_PARSERS: dict[str, Callable[[str, datetime], ParseResult]] = {
    binance_ws.VENDOR: binance_ws.parse_binance_frame,
    brapi.VENDOR: brapi.parse_brapi_body,
}
#: The ``dead_letters_total`` source label per vendor: the connector, not the stream, to keep
#: the label's cardinality low (the dead letter itself names the stream).
_METRIC_SOURCES = {binance_ws.VENDOR: binance_ws.SOURCE, brapi.VENDOR: "brapi"}

#: Vendors ``parse_frame`` knows: ``("binance", "brapi")``.
VENDORS = tuple(_PARSERS)


def parse_frame(vendor: str, raw: str, receive_time: datetime) -> ParseResult:
    """Normalize one raw frame into records or dead letters, and count the dead letters.

    Pure apart from the ``dead_letters_total`` counter: the same frame always gives the same
    result, live or replayed. A bad frame never raises; an unknown ``vendor`` or a naive
    ``receive_time`` does (they are bugs in the caller, not bad input).

    >>> from datetime import UTC, datetime
    >>> result = parse_frame("binance", '{"u":1,"s":"BTCUSDT","b":"2","B":"1","a":"1","A":"1"}',
    ...                      datetime(2026, 4, 23, 13, 30, tzinfo=UTC))
    >>> result.records, result.dead_letters[0].reason, result.dead_letters[0].fields
    ((), 'CROSSED_QUOTE', ('b', 'a'))
    """
    parser = _PARSERS.get(vendor)
    if parser is None:
        raise ConfigError(f"no parser for vendor {vendor!r}; known vendors: {', '.join(VENDORS)}")
    if receive_time.tzinfo is None or receive_time.utcoffset() is None:
        raise ValueError(f"receive_time must be tz-aware UTC, got naive {receive_time!r}")
    result = parser(raw, receive_time)
    for letter in result.dead_letters:
        DEAD_LETTERS.labels(source=_METRIC_SOURCES[vendor], reason=letter.reason).inc()
    return result
