"""The push channel: how a notification reaches a user with no open WebSocket (FCM/APNs).

There is no phone here, so the channel is pluggable (``NOTIFY_PUSH``):

* ``log``: writes each push to the log and always succeeds; the default.
* ``fake``: a device stand-in in Redis, for tests and demos. Each push lands in the user's
  inbox list ``push:inbox:{userId}`` (newest 100), and it fails the way the real services do on
  demand: while ``push:down`` exists every push is refused ``UNAVAILABLE`` (its value is the
  detail), which is worth retrying; a user in the set ``push:unregistered`` has no device
  (``UNREGISTERED``, as FCM answers for a stale token), which no retry mends.
* ``none``: pushes nothing; offline users read their backlog when they reconnect.

A refusal raises :class:`PushRefusedError`; whether the retry job should try again is its
``retryable``.
"""

from __future__ import annotations

import logging
from typing import Protocol

from redis.asyncio import Redis

__all__ = [
    "FakeDevicePush",
    "LogPush",
    "NoPush",
    "PushChannel",
    "PushRefusedError",
    "push_channel",
]

log = logging.getLogger(__name__)

_INBOX_KEPT = 100


class PushRefusedError(Exception):
    """The push service did not take the notification."""

    def __init__(self, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class PushChannel(Protocol):
    name: str

    async def send(self, user_id: str, notification_id: str, message: str) -> None:
        """Hand the message to the user's devices, or raise :class:`PushRefusedError`."""


class LogPush:
    name = "log"

    async def send(self, user_id: str, notification_id: str, message: str) -> None:
        log.info("push to %s (%s): %s", user_id, notification_id, message)


class NoPush:
    name = "none"

    async def send(self, user_id: str, notification_id: str, message: str) -> None:
        return None


class FakeDevicePush:
    name = "fake"

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def inbox(self, user_id: str) -> str:
        return f"{self.prefix}push:inbox:{user_id}"

    @property
    def down_key(self) -> str:
        return f"{self.prefix}push:down"

    @property
    def unregistered_key(self) -> str:
        return f"{self.prefix}push:unregistered"

    async def send(self, user_id: str, notification_id: str, message: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.down_key)
            pipe.sismember(self.unregistered_key, user_id)
            down, unregistered = await pipe.execute()
        if down is not None:
            raise PushRefusedError(
                "UNAVAILABLE", down.decode() or "the push service is down", retryable=True
            )
        if unregistered:
            raise PushRefusedError(
                "UNREGISTERED", f"user {user_id} has no registered device", retryable=False
            )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.inbox(user_id), message)
            pipe.ltrim(self.inbox(user_id), 0, _INBOX_KEPT - 1)
            await pipe.execute()


def push_channel(kind: str, redis: Redis, prefix: str) -> PushChannel:
    """The channel ``NOTIFY_PUSH`` names."""
    if kind == "log":
        return LogPush()
    if kind == "fake":
        return FakeDevicePush(redis, prefix)
    if kind == "none":
        return NoPush()
    raise ValueError(f"NOTIFY_PUSH={kind!r} is not a push channel; use log, fake or none")
