"""Session-close schedule and reference-price throttle of the exchange agents."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from brokerflow.exchange.schedule import (
    ReferenceState,
    close_to_publish,
    offer_price,
    release_held,
    session_close_at,
)

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


def test_offer_price_forwards_changes_at_most_once_per_interval_of_event_time() -> None:
    second = timedelta(seconds=1)
    t = at(2026, 1, 2, 13, 0)
    state, send = offer_price(None, "B3", Decimal("38.50"), t, second)
    assert send
    assert state == ReferenceState("B3", Decimal("38.50"), t)
    later = t + timedelta(seconds=5)
    assert offer_price(state, "B3", Decimal("38.50"), later, second) == (state, False)  # unchanged
    state, send = offer_price(state, "B3", Decimal("38.51"), t + second, second)  # exactly 1 s
    assert send
    assert state == ReferenceState("B3", Decimal("38.51"), t + second)


def test_a_change_that_comes_too_soon_is_held_and_the_newest_one_wins() -> None:
    second = timedelta(seconds=1)
    t = at(2026, 1, 2, 13, 0)
    forwarded = ReferenceState("B3", Decimal("40.00"), t)
    ms = timedelta(milliseconds=1)
    state, send = offer_price(forwarded, "B3", Decimal("40.50"), t + 400 * ms, second)
    assert not send
    assert state == ReferenceState("B3", Decimal("40.00"), t, Decimal("40.50"), t + 400 * ms)
    state, send = offer_price(state, "B3", Decimal("40.70"), t + 999 * ms, second)
    assert not send
    assert (state.held_price, state.held_event_time) == (
        Decimal("40.70"),
        t + 999 * ms,
    )
    # The timer forwards the held price with its own event time; nothing is held after that.
    assert release_held(state) == ReferenceState("B3", Decimal("40.70"), t + 999 * ms)
    assert release_held(forwarded) is None


def test_a_return_to_the_forwarded_price_drops_the_held_one() -> None:
    second = timedelta(seconds=1)
    t = at(2026, 1, 2, 13, 0)
    held = ReferenceState("B3", Decimal("40.00"), t, Decimal("40.50"), t + timedelta(seconds=0.4))
    state, send = offer_price(held, "B3", Decimal("40.00"), t + timedelta(seconds=0.6), second)
    assert not send
    assert state == ReferenceState("B3", Decimal("40.00"), t)


def test_a_change_after_the_interval_is_forwarded_and_replaces_the_held_one() -> None:
    second = timedelta(seconds=1)
    t = at(2026, 1, 2, 13, 0)
    held = ReferenceState("B3", Decimal("40.00"), t, Decimal("40.50"), t + timedelta(seconds=0.4))
    state, send = offer_price(held, "B3", Decimal("41.00"), t + timedelta(seconds=2), second)
    assert send
    assert state == ReferenceState("B3", Decimal("41.00"), t + timedelta(seconds=2))


def test_reference_state_round_trips_through_its_table_record() -> None:
    t = at(2026, 1, 2, 13, 0)
    for state in (
        ReferenceState("BINANCE", Decimal("64000.10"), t),
        ReferenceState("B3", Decimal("40.00"), t, Decimal("40.50"), t + timedelta(seconds=0.4)),
    ):
        assert ReferenceState.from_bytes(state.to_bytes()) == state
    assert b'"price":"64000.10"' in ReferenceState("BINANCE", Decimal("64000.10"), t).to_bytes()
