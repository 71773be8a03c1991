"""Backoff delays and the outgoing-message limiter, with exact expected waits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brokerflow.connectors import Backoff, RateLimiter

from .fakes import FakeClock


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (0.0, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]),  # the floor: half of each ceiling
        (0.5, [0.75, 1.5, 3.0, 6.0, 7.5, 7.5]),
        (1.0, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),  # the ceiling, capped at the maximum
    ],
)
def test_equal_jitter_backoff_doubles_up_to_the_maximum(draw: float, expected: list[float]) -> None:
    backoff = Backoff(initial=1.0, maximum=10.0)

    assert [backoff.delay(attempt, random=lambda: draw) for attempt in range(6)] == expected


def test_a_days_long_outage_does_not_overflow() -> None:
    assert Backoff(initial=1.0, maximum=60.0).delay(10_000, random=lambda: 1.0) == 60.0


@pytest.mark.parametrize(
    "arguments",
    [{"initial": 0.0}, {"initial": 5.0, "maximum": 1.0}, {"multiplier": 0.5}, {"jitter": 2.0}],
)
def test_nonsense_backoff_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        Backoff(**arguments)


async def test_at_most_five_messages_in_any_second() -> None:
    clock = FakeClock(datetime(2026, 4, 23, 13, 30, tzinfo=UTC))
    limiter = RateLimiter(5, 1.0, clock=clock.monotonic, sleep=clock.sleep)
    sent_at = []

    for _ in range(12):
        await limiter.acquire()
        sent_at.append(clock.monotonic())

    assert sent_at == [0.0] * 5 + [1.0] * 5 + [2.0] * 2
    assert clock.delays == [1.0, 1.0]


async def test_spaced_out_messages_never_wait() -> None:
    clock = FakeClock(datetime(2026, 4, 23, 13, 30, tzinfo=UTC))
    limiter = RateLimiter(5, 1.0, clock=clock.monotonic, sleep=clock.sleep)

    for _ in range(10):
        await limiter.acquire()
        await clock.sleep(0.25)

    assert clock.delays == [0.25] * 10  # only the test's own spacing
