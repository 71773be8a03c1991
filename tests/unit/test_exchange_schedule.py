"""Session-close schedule and reference-price throttle of the exchange agents."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from brokerflow.exchange_schedule import ReferenceThrottle, close_to_publish, session_close_at

SP = "America/Sao_Paulo"
OPEN, CLOSE = time(10, 0), time(17, 0)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_session_close_is_17h_in_sao_paulo_which_is_20h_utc() -> None:
    assert session_close_at(date(2026, 1, 2), CLOSE, SP) == at(2026, 1, 2, 20, 0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2026, 1, 2, 19, 59), None),  # Friday, before the close
        (at(2026, 1, 2, 20, 0), date(2026, 1, 2)),  # at the close
        (at(2026, 1, 3, 15, 0), date(2026, 1, 2)),  # Saturday: still Friday's session
        (at(2026, 1, 5, 12, 59), date(2026, 1, 2)),  # Monday before the 10:00 (13:00Z) open
        (at(2026, 1, 5, 13, 0), None),  # Monday open: publishing Friday's close would expire
        (at(2026, 1, 5, 21, 0), date(2026, 1, 5)),  # Monday after its close
    ],
)
def test_close_to_publish_covers_the_close_until_the_next_open(
    now: datetime, expected: date | None
) -> None:
    due = close_to_publish(now, OPEN, CLOSE, SP)
    assert (due and due[0]) == expected
    if due is not None:
        assert due[1] == session_close_at(due[0], CLOSE, SP)


def test_close_to_publish_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        close_to_publish(datetime(2026, 1, 2, 20), OPEN, CLOSE, SP)  # noqa: DTZ001


def test_throttle_forwards_changes_at_most_once_per_interval_of_event_time() -> None:
    throttle = ReferenceThrottle(timedelta(seconds=1))
    t = at(2026, 1, 2, 13, 0)
    price = Decimal("38.50")
    assert throttle.should_forward("PETR4", price, t)
    assert not throttle.should_forward("PETR4", price, t + timedelta(seconds=5))  # unchanged
    assert not throttle.should_forward("PETR4", Decimal("38.51"), t + timedelta(milliseconds=500))
    assert throttle.should_forward("PETR4", Decimal("38.51"), t + timedelta(seconds=1))
    assert throttle.should_forward("VALE3", price, t)  # per symbol
