"""Pure time rules of the exchange: when a session closes, and when a price is worth forwarding.

Both feed commands into the order-command topic rather than touching books, so that what they
cause (``OrderExpired``, a moved price band) is ordered in the same log as the orders and a replay
reproduces it exactly. Nothing here reads a clock: callers pass ``now``.

>>> from datetime import UTC, datetime, time
>>> close_to_publish(datetime(2026, 1, 2, 20, 5, tzinfo=UTC), time(10), time(17),
...                  "America/Sao_Paulo")
(datetime.date(2026, 1, 2), datetime.datetime(2026, 1, 2, 20, 0, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = [
    "ReferenceState",
    "close_to_publish",
    "is_session_day",
    "offer_price",
    "release_held",
    "session_close_at",
]


def is_session_day(day: date) -> bool:
    """Monday to Friday. (Exchange holidays are not modelled: a close on one expires nothing
    that a real close would not.)"""
    return day.weekday() < 5


def session_close_at(day: date, close: time, timezone: str) -> datetime:
    """The UTC instant of ``day``'s close in the venue's time zone (DST-aware)."""
    return datetime.combine(day, close, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def close_to_publish(
    now: datetime, open_: time, close: time, timezone: str
) -> tuple[date, datetime] | None:
    """The session to close now: ``(session date, close instant)``, or ``None``.

    A session is closed from its close until the next session day's open. Outside that window
    nothing is published: closing yesterday's session after today's open would expire orders
    placed today. A worker down for that whole window therefore misses one close; the DAY orders
    then expire at the next close.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(timezone)
    local_today = now.astimezone(zone).date()
    for back in range(8):
        day = local_today - timedelta(days=back)
        if not is_session_day(day):
            continue
        closes = session_close_at(day, close, timezone)
        if closes > now:
            continue
        next_day = day + timedelta(days=1)
        while not is_session_day(next_day):
            next_day += timedelta(days=1)
        next_open = datetime.combine(next_day, open_, tzinfo=zone).astimezone(UTC)
        return (day, closes) if now < next_open else None
    return None


@dataclass(frozen=True, slots=True)
class ReferenceState:
    """A symbol's last forwarded reference price, and a newer price the interval held back.

    One per (market topic, symbol), stored in the exchange's ``reference_forwarding`` table in
    the transaction that forwards or holds a price, so a restarted worker neither forwards an
    unchanged price again nor forgets a held one.
    """

    source: str
    price: Decimal
    event_time: datetime
    held_price: Decimal | None = None
    held_event_time: datetime | None = None

    def to_bytes(self) -> bytes:
        record = {
            "source": self.source,
            "price": str(self.price),
            "eventTime": self.event_time.isoformat(),
            "heldPrice": None if self.held_price is None else str(self.held_price),
            "heldEventTime": None
            if self.held_event_time is None
            else self.held_event_time.isoformat(),
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> ReferenceState:
        record = json.loads(value)
        held_price, held_time = record.get("heldPrice"), record.get("heldEventTime")
        return cls(
            source=record["source"],
            price=Decimal(record["price"]),
            event_time=datetime.fromisoformat(record["eventTime"]),
            held_price=None if held_price is None else Decimal(held_price),
            held_event_time=None if held_time is None else datetime.fromisoformat(held_time),
        )


def offer_price(
    state: ReferenceState | None,
    source: str,
    price: Decimal,
    event_time: datetime,
    min_interval: timedelta,
) -> tuple[ReferenceState, bool]:
    """The state after a market price, and whether to forward that price now.

    A price is forwarded when it differs from the last one forwarded and at least
    ``min_interval`` of market event time (not wall time: the same market tape forwards the same
    prices) passed since then. A changed price that comes too soon is held, replacing any older
    held one; :func:`release_held` forwards it later, so the last price of a burst still becomes
    the reference. A price equal to the last forwarded one drops the held price: the market is
    back at the reference.
    """
    if state is None:
        return ReferenceState(source, price, event_time), True
    if price == state.price:
        if state.held_price is None:
            return state, False
        return ReferenceState(state.source, state.price, state.event_time), False
    if event_time - state.event_time >= min_interval:
        return ReferenceState(source, price, event_time), True
    return ReferenceState(state.source, state.price, state.event_time, price, event_time), False


def release_held(state: ReferenceState) -> ReferenceState | None:
    """The state once the held price is forwarded; ``None`` when no price is held."""
    if state.held_price is None or state.held_event_time is None:
        return None
    return ReferenceState(state.source, state.held_price, state.held_event_time)
