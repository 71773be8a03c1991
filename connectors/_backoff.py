"""Retry pacing shared by the connectors: jittered exponential backoff and a send-rate limiter.

Both take their clock, sleep and randomness as arguments so tests assert exact delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Backoff", "RateLimiter", "Sleep"]

#: ``asyncio.sleep`` or a test's recording stand-in.
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the ceiling fixed, half random.

    The ceiling doubles per failed attempt up to ``maximum``; the delay is drawn from
    ``[ceiling * (1 - jitter), ceiling]``. A guaranteed floor stops a fleet of clients that lost
    the same server from hammering it at once with near-zero waits (which full jitter allows),
    while the random part still spreads them out.

        >>> Backoff(initial=1.0, maximum=8.0).delay(0, random=lambda: 0.5)
        0.75
        >>> [Backoff(initial=1.0, maximum=8.0).delay(n, random=lambda: 1.0) for n in range(5)]
        [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum):
            raise ValueError(f"need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        if self.multiplier < 1 or not (0 <= self.jitter <= 1):
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after ``attempt`` consecutive failures (0 = the first retry)."""
        # Capping the exponent keeps a days-long outage from overflowing a float.
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, random: Callable[[], float] = random.random) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter) + ceiling * self.jitter * random()


class RateLimiter:
    """At most ``limit`` acquisitions in any ``period`` seconds (a sliding window).

    Binance disconnects a client that sends more than 5 messages a second on one connection. A
    token bucket would allow a burst of 5 plus the refill inside one second; the sliding window
    never does.
    """

    def __init__(
        self,
        limit: int = 5,
        period: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(f"need limit >= 1 and period > 0, got {limit}, {period}")
        self._limit = limit
        self._period = period
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque(maxlen=limit)
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more message may go out, then count it."""
        async with self._lock:
            while len(self._sent) == self._limit:
                wait = self._sent[0] + self._period - self._clock()
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._sent.append(self._clock())
