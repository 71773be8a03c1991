"""B3 business days and settlement dates, against calendars checked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from brokerflow.broker import (
    add_business_days,
    b3_holidays,
    easter_sunday,
    is_business_day,
    settlement_date,
)
from brokerflow.broker.calendar import carnival, local_date


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (1818, date(1818, 3, 22)),  # the earliest possible Easter
        (1943, date(1943, 4, 25)),  # the latest possible Easter
        (2000, date(2000, 4, 23)),
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2026, date(2026, 4, 5)),
        (2027, date(2027, 3, 28)),
        (2038, date(2038, 4, 25)),
    ],
)
def test_easter_sunday(year: int, easter: date) -> None:
    assert easter_sunday(year) == easter


def test_the_2027_holidays_are_the_documented_list() -> None:
    assert sorted(b3_holidays(2027)) == [
        date(2027, 1, 1),
        date(2027, 2, 8),  # Carnival Monday: Easter (Mar 28) - 48
        date(2027, 2, 9),  # Carnival Tuesday: - 47
        date(2027, 3, 26),  # Good Friday: - 2
        date(2027, 4, 21),
        date(2027, 5, 1),
        date(2027, 5, 27),  # Corpus Christi: + 60
        date(2027, 9, 7),
        date(2027, 10, 12),
        date(2027, 11, 2),
        date(2027, 11, 15),
        date(2027, 11, 20),
        date(2027, 12, 24),
        date(2027, 12, 25),
        date(2027, 12, 31),
    ]
    assert carnival(2027) == (date(2027, 2, 8), date(2027, 2, 9))


@pytest.mark.parametrize(
    ("day", "business"),
    [
        (date(2026, 6, 25), True),  # Thursday
        (date(2026, 6, 27), False),  # Saturday
        (date(2026, 6, 28), False),  # Sunday
        (date(2026, 6, 4), False),  # Corpus Christi 2026 (Apr 5 + 60), a Thursday
        (date(2026, 11, 20), False),  # Black Consciousness, a Friday
        (date(2027, 2, 10), True),  # Ash Wednesday trades (from 13:00): a business day
        (date(2026, 12, 24), False),
    ],
)
def test_business_days(day: date, business: bool) -> None:
    assert is_business_day(day) is business


@pytest.mark.parametrize(
    ("trade_day", "days", "settles"),
    [
        # Thursday -> Fri (D+1), Mon (D+2): across a weekend.
        (date(2026, 6, 25), 2, date(2026, 6, 29)),
        # Friday -> Mon, Tue.
        (date(2026, 6, 26), 2, date(2026, 6, 30)),
        # Friday before Carnival 2027: Mon 8 and Tue 9 are holidays -> Wed 10, Thu 11.
        (date(2027, 2, 5), 2, date(2027, 2, 11)),
        # Thursday before Good Friday 2026 (Apr 3): Apr 3-5 closed -> Mon 6, Tue 7.
        (date(2026, 4, 2), 2, date(2026, 4, 7)),
        # Tuesday before Christmas 2025: Wed 24 and Thu 25 closed -> Fri 26, Mon 29.
        (date(2025, 12, 23), 2, date(2025, 12, 29)),
        # Tuesday before New Year: Wed 30, then Thu 31, Fri Jan 1, the weekend -> Mon Jan 4.
        (date(2026, 12, 29), 2, date(2027, 1, 4)),
        # D+0 is the day itself, even a Saturday.
        (date(2026, 6, 27), 0, date(2026, 6, 27)),
        # A Saturday's D+1 is the next business day, Monday.
        (date(2026, 6, 27), 1, date(2026, 6, 29)),
    ],
)
def test_add_business_days(trade_day: date, days: int, settles: date) -> None:
    assert add_business_days(trade_day, days) == settles


def test_settlement_counts_from_the_trade_date_in_sao_paulo() -> None:
    # 02:00 UTC on Friday 06-26 is 23:00 on Thursday 06-25 in Sao Paulo (UTC-3): D+2 is Monday.
    late_thursday = datetime(2026, 6, 26, 2, 0, tzinfo=UTC)
    assert local_date(late_thursday) == date(2026, 6, 25)
    assert settlement_date(late_thursday, 2) == date(2026, 6, 29)
    # 03:00 UTC is midnight: Friday, so D+2 is Tuesday.
    assert settlement_date(datetime(2026, 6, 26, 3, 0, tzinfo=UTC), 2) == date(2026, 6, 30)
    assert settlement_date(late_thursday, 0) == date(2026, 6, 25)


def test_naive_times_and_negative_days_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        settlement_date(datetime(2026, 6, 25, 13, 0), 2)  # noqa: DTZ001  (the point)
    with pytest.raises(ValueError, match="negative"):
        add_business_days(date(2026, 6, 25), -1)
