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

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = ["ReferenceThrottle", "close_to_publish", "is_session_day", "session_close_at"]


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


@dataclass(slots=True)
class ReferenceThrottle:
    """Forward a symbol's last trade price only when it changed, at most once per interval.

    Measured in trade event time, not wall time, so the same trade tape forwards the same prices.
    """

    min_interval: timedelta
    _last: dict[str, tuple[Decimal, datetime]] = field(default_factory=dict)

    def should_forward(self, symbol: str, price: Decimal, event_time: datetime) -> bool:
        last = self._last.get(symbol)
        if last is not None:
            last_price, last_time = last
            if price == last_price or event_time - last_time < self.min_interval:
                return False
        self._last[symbol] = (price, event_time)
        return True
