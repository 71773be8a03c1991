"""What every connector hands on: raw frames in, parse results out.

I/O and parsing meet only here. A connector (``BinanceStream``, ``BrapiPoller``, ``TapePlayer``)
yields :class:`Frame` values, the vendor's text untouched plus the time we received it; the pure
``parse_frame`` turns one frame into a :class:`ParseResult`. Live and replay share that step, so a
tape replays into exactly the records the live feed produced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from brokerflow.errors import SchemaError
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.market import BestBidAsk, Quote, Trade

__all__ = [
    "MAX_EPOCH_MILLIS",
    "ControlEvent",
    "DeadLetterReason",
    "Frame",
    "FrameRejectedError",
    "MarketRecord",
    "ParseResult",
    "from_epoch_millis",
    "from_epoch_seconds",
    "utc_now",
]

#: One normalized tick, whichever vendor sent it.
MarketRecord = Trade | BestBidAsk | Quote

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The last millisecond a ``datetime`` holds (9999-12-31T23:59:59.999Z): a vendor's epoch time
#: above it is refused as a field, or ``from_epoch_millis`` would raise ``OverflowError``.
MAX_EPOCH_MILLIS = 253_402_300_799_999


def utc_now() -> datetime:
    """The receive clock every connector stamps frames with (injectable in tests)."""
    return datetime.now(UTC)


def from_epoch_millis(millis: int) -> datetime:
    """Exact: integer arithmetic, no float division that could round a millisecond away."""
    return _EPOCH + timedelta(milliseconds=millis)


def from_epoch_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


class Frame(NamedTuple):
    """One payload as the vendor sent it: a WebSocket text frame or an HTTP response body.

    The field order matches ``parse_frame(vendor, raw, receive_time)``, so ``parse_frame(*frame)``
    works.
    """

    #: ``"binance"`` or ``"brapi"``.
    vendor: str
    raw: str
    #: When we received it (tz-aware UTC); a replayed frame keeps its recorded time.
    receive_time: datetime


class DeadLetterReason(StrEnum):
    """Why a connector refused a frame: the ``reason`` of its :class:`DeadLetter`."""

    #: The text is not JSON (truncated, garbage, an HTML error page).
    NOT_JSON = "NOT_JSON"
    #: JSON, but no event we know (an ``aggTrade`` we never subscribed to, a bare array).
    UNKNOWN_EVENT = "UNKNOWN_EVENT"
    #: A known event with a missing, mistyped or out-of-range field (``detail`` names it).
    INVALID_FIELD = "INVALID_FIELD"
    #: A best bid above the best ask.
    CROSSED_QUOTE = "CROSSED_QUOTE"
    #: The vendor itself reported an error in the payload (Brapi ``{"error": ...}``).
    VENDOR_ERROR = "VENDOR_ERROR"


class ControlEvent(StrEnum):
    """A frame that is neither data nor an error, but tells the connection something."""

    #: Binance is about to close the connection: reconnect now.
    SERVER_SHUTDOWN = "serverShutdown"
    #: Binance's answer to a SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request.
    SUBSCRIPTION_REPLY = "subscriptionReply"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The outcome of parsing one frame: records, dead letters, or a control event.

    One Brapi body can hold several quotes, some good and some not, so records and dead letters
    travel side by side (bytewax's ``oks``/``errs``) rather than as either/or. A frame never
    raises: whatever is wrong with it becomes a dead letter.
    """

    records: tuple[MarketRecord, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    control: ControlEvent | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was dead-lettered."""
        return not self.dead_letters


class FrameRejectedError(Exception):
    """Raised inside a parser to refuse a frame (or one entry of it); never leaves ``parse_*``."""

    def __init__(self, reason: DeadLetterReason, detail: str, fields: Iterable[str] = ()) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.fields = tuple(fields)

    @classmethod
    def from_schema_error(
        cls, error: SchemaError, *, what: str, wire_names: dict[str, str], prefix: str = ""
    ) -> FrameRejectedError:
        """Blame the vendor's field, not ours: ``quantity`` becomes ``data.q``.

        ``wire_names`` maps a domain field (``quantity``, ``trade_id``) to the vendor's (``q``);
        unmapped paths (already the vendor's, from the wire model) keep their own name.
        """
        problems = {
            f"{prefix}{wire_names.get(path, path)}": why for path, why in error.problems.items()
        }
        detail = "; ".join(f"{path}: {why}" for path, why in problems.items())
        return cls(DeadLetterReason.INVALID_FIELD, f"invalid {what}: {detail}", problems)

    def to_dead_letter(self, *, source: str, raw: str, receive_time: datetime) -> DeadLetter:
        return DeadLetter.from_payload(
            source=source,
            reason=self.reason.value,
            detail=self.detail,
            fields=self.fields,
            payload=raw,
            event_time=receive_time,
        )
