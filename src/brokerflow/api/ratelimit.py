"""Requests per user in a moving window (the ``limits`` library, on the API's Redis).

Every authenticated answer carries where the user stands::

    X-RateLimit-Limit: 50          requests allowed per window (API_RATE_LIMIT)
    X-RateLimit-Remaining: 37      left in the current window
    X-RateLimit-Reset: 1767360601  Unix time (s) when the oldest request leaves the window

and a refused one is 429 with ``Retry-After`` (seconds). A moving window, not a fixed one: a
client cannot send twice the limit across a window boundary.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from brokerflow.errors import ConfigError

__all__ = ["RateLimitState", "UserRateLimiter", "parse_limit"]


def parse_limit(text: str) -> RateLimitItem:
    """``API_RATE_LIMIT`` as a limits item; ConfigError naming the setting when malformed."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(
            f"API_RATE_LIMIT={text!r} is not a rate limit ({exc}); write e.g. 50/second"
        ) from None


@dataclass(frozen=True, slots=True)
class RateLimitState:
    allowed: bool
    limit: int
    remaining: int
    #: Unix time (seconds) when the window has room again.
    reset_at: float

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    def retry_after(self, now: float) -> int:
        """Whole seconds until a request fits again; at least 1."""
        return max(1, math.ceil(self.reset_at - now))


class UserRateLimiter:
    """One moving window per user id, kept in Redis under ``{prefix}ratelimit/...``."""

    def __init__(self, redis: Redis, redis_url: str, limit: str, prefix: str) -> None:
        self.item = parse_limit(limit)
        url = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
        # The API's own connection pool: one set of sockets and one timeout policy.
        self._storage = RedisStorage(
            url,
            implementation="redispy",
            key_prefix=f"{prefix}ratelimit",
            connection_pool=redis.connection_pool,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, user_id: str) -> RateLimitState:
        allowed = await self._limiter.hit(self.item, user_id)
        stats = await self._limiter.get_window_stats(self.item, user_id)
        reset_at = stats.reset_time if stats.reset_time > 0 else time.time()
        return RateLimitState(allowed, self.item.amount, stats.remaining, reset_at)
