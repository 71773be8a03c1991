"""Market-data connectors: vendor frames in, normalized ``Trade`` / ``BestBidAsk`` / ``Quote`` out.

Where to start: every source yields raw :class:`Frame` values (vendor, text, receive time) and
the one pure :func:`parse_frame` turns a frame into a :class:`ParseResult` (records, dead letters,
or a control event). I/O and parsing never mix, so a live feed and a tape replay produce the same
records.

=====================  =========================================================================
source                 what it yields
=====================  =========================================================================
``BinanceStream``      WebSocket frames from Binance combined streams (trade, bookTicker),
                       sharded, reconnecting, watchdogged
``BrapiPoller``        ``/api/quote`` response bodies from Brapi, within budget and B3 hours
``TapePlayer``         frames from a recorded tape, at recorded, scaled or full speed
=====================  =========================================================================

``TapeRecorder`` records any of them. One module per vendor (``binance_ws``, ``brapi``), each
with its wire schema, a ``to_domain()`` step and a real sample payload in its docstring.
"""

from ._backoff import Backoff, RateLimiter
from ._frames import ControlEvent, DeadLetterReason, Frame, MarketRecord, ParseResult
from ._parse import VENDORS, parse_frame
from .binance_ws import BinanceStream, parse_binance_frame
from .brapi import (
    BrapiAuthError,
    BrapiBudgetExhaustedError,
    BrapiError,
    BrapiPlanLimitError,
    BrapiPoller,
    BrapiRateLimitedError,
    BrapiUnavailableError,
    BrapiUnknownTickerError,
    RequestBudget,
    TradingSession,
    parse_brapi_body,
)
from .tape import TapeError, TapePlayer, TapeRecorder, read_tape, sample_tape_path

__all__ = [
    "VENDORS",
    "Backoff",
    "BinanceStream",
    "BrapiAuthError",
    "BrapiBudgetExhaustedError",
    "BrapiError",
    "BrapiPlanLimitError",
    "BrapiPoller",
    "BrapiRateLimitedError",
    "BrapiUnavailableError",
    "BrapiUnknownTickerError",
    "ControlEvent",
    "DeadLetterReason",
    "Frame",
    "MarketRecord",
    "ParseResult",
    "RateLimiter",
    "RequestBudget",
    "TapeError",
    "TapePlayer",
    "TapeRecorder",
    "TradingSession",
    "parse_binance_frame",
    "parse_brapi_body",
    "parse_frame",
    "read_tape",
    "sample_tape_path",
]
