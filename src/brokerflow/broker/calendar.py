"""B3's business-day calendar: settlement dates and session days (pure, no clock).

A business day is Monday to Friday except these B3 holidays (no trading, no settlement):

==========================  ================================================================
fixed dates                 Jan 1 (New Year), Apr 21 (Tiradentes), May 1 (Labour Day),
                            Sep 7 (Independence), Oct 12 (Our Lady of Aparecida), Nov 2 (All
                            Souls), Nov 15 (Republic), Nov 20 (Black Consciousness), Dec 24 and
                            Dec 31 (no session), Dec 25 (Christmas)
moving, from Easter Sunday  Carnival Monday and Tuesday (Easter - 48 and - 47 days), Good Friday
                            (Easter - 2), Corpus Christi (Easter + 60)
==========================  ================================================================

Easter comes from the anonymous Gregorian algorithm (Meeus/Jones/Butcher). City holidays of Sao
Paulo (Jan 25, Jul 9) and one-off closures are left out: B3 has traded on some of them, and a
simulator that is off by one rare day is better than one that guesses.

>>> easter_sunday(2027), carnival(2027)
(datetime.date(2027, 3, 28), (datetime.date(2027, 2, 8), datetime.date(2027, 2, 9)))
>>> add_business_days(date(2027, 2, 5), 2)    # Friday before Carnival: D+2 is Thursday
datetime.date(2027, 2, 11)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

__all__ = [
    "B3_TIMEZONE",
    "add_business_days",
    "b3_holidays",
    "carnival",
    "easter_sunday",
    "is_business_day",
    "local_date",
    "settlement_date",
]

#: Where B3 counts its days: a trade's date is its date in Sao Paulo, not in UTC.
B3_TIMEZONE: Final = "America/Sao_Paulo"

_FIXED_HOLIDAYS: Final = (
    (1, 1),
    (4, 21),
    (5, 1),
    (9, 7),
    (10, 12),
    (11, 2),
    (11, 15),
    (11, 20),
    (12, 24),
    (12, 25),
    (12, 31),
)
#: Offsets from Easter Sunday: Carnival Monday, Carnival Tuesday, Good Friday, Corpus Christi.
_EASTER_OFFSETS: Final = (-48, -47, -2, 60)


def easter_sunday(year: int) -> date:
    """Easter Sunday of a Gregorian year (the anonymous algorithm, exact for every year)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    lc = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * lc) // 451
    month, day = divmod(h + lc - 7 * m + 114, 31)
    return date(year, month, day + 1)


def carnival(year: int) -> tuple[date, date]:
    """Carnival Monday and Tuesday (47 and 48 days before Easter): no B3 session."""
    easter = easter_sunday(year)
    return easter - timedelta(days=48), easter - timedelta(days=47)


@lru_cache(maxsize=64)
def b3_holidays(year: int) -> frozenset[date]:
    """Every B3 holiday of ``year`` (see the module docstring for the list)."""
    easter = easter_sunday(year)
    fixed = {date(year, month, day) for month, day in _FIXED_HOLIDAYS}
    moving = {easter + timedelta(days=offset) for offset in _EASTER_OFFSETS}
    return frozenset(fixed | moving)


def is_business_day(day: date) -> bool:
    """Monday to Friday and not a B3 holiday."""
    return day.weekday() < 5 and day not in b3_holidays(day.year)


def add_business_days(day: date, days: int) -> date:
    """The ``days``-th business day after ``day`` (``day`` itself when ``days`` is 0).

    ``day`` need not be a business day: a Saturday's D+1 is the Monday after it (when Monday
    is a business day), the same as Friday's D+1.
    """
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    current = day
    remaining = days
    while remaining:
        current += timedelta(days=1)
        if is_business_day(current):
            remaining -= 1
    return current


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(moment: datetime, timezone: str = B3_TIMEZONE) -> date:
    """The calendar date of an aware instant in ``timezone``."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware UTC datetime")
    return moment.astimezone(_zone(timezone)).date()


def settlement_date(trade_time: datetime, settlement_days: int) -> date:
    """The date a trade's cash settles: D+``settlement_days`` B3 business days.

    D is the trade's date in Sao Paulo; ``settlement_days`` business days are added to it,
    skipping weekends and holidays (a trade dated on a non-business day counts from it too, so
    its D+1 is the first business day after it).
    """
    return add_business_days(local_date(trade_time), settlement_days)
