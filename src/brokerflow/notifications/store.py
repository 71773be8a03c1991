"""Per-user delivery in Redis: a gap-free sequence, a bounded backlog, and pub/sub fan-out.

Keys, behind ``API_REDIS_PREFIX`` (one namespace with the API that reads them)::

    notify:seq:{userId}   the user's last delivery sequence (INCR)
    notify:ids:{userId}   hash notificationId -> the sequence it was given (drops repeats)
    notify:log:{userId}   sorted set: the WebSocket message, scored by its sequence; the newest
                          NOTIFY_BACKLOG kept
    user:{userId}         the pub/sub channel every gateway process subscribed for the user
                          listens on (seed 002), carrying the same message

One Lua script does it all atomically, so whatever the number of delivery processes and
however often a notification is delivered again (at-least-once upstream), each notification id
gets one sequence, the sequences have no gap, and a message is published once. A gateway
subscribes to the channel first and reads the backlog after, then skips what it sent: a client
resuming from its last sequence misses nothing and sees nothing twice. Keys expire
``NOTIFY_RETENTION_S`` after the user's last notification.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from brokerflow.notifications.core import SEQUENCE_PLACEHOLDER

__all__ = ["Backlog", "Delivered", "NotificationStore"]

#: KEYS: seq, ids, log, channel. ARGV: notification id, message, backlog size, ttl seconds.
#: Returns {sequence, subscribers that received it}; the sequence is negative when the id was
#: delivered before (nothing changed, nothing published).
_DELIVER = """
local known = redis.call('HGET', KEYS[2], ARGV[1])
if known then
  return {-tonumber(known), 0}
end
local seq = redis.call('INCR', KEYS[1])
local message = string.gsub(ARGV[2], '"sequence":%-1', '"sequence":' .. seq, 1)
redis.call('HSET', KEYS[2], ARGV[1], seq)
redis.call('ZADD', KEYS[3], seq, message)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[3]) + 1))
for i = 1, 3 do
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4]))
end
local receivers = redis.call('PUBLISH', KEYS[4], message)
return {seq, receivers}
"""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What delivering one notification did."""

    #: The user's sequence for it; negative when it was a repeat (nothing published).
    sequence: int
    #: Gateway subscriptions that received it: 0 means the user has no open socket anywhere.
    receivers: int
    #: The message as sent, its sequence filled in (a repeat keeps the placeholder).
    message: str

    @property
    def new(self) -> bool:
        return self.sequence > 0


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a resuming client gets: the messages after its sequence, oldest first, and
    whether some it asked for were already trimmed away (it must resync from the API)."""

    messages: list[bytes]
    last_sequence: int
    trimmed: bool


class NotificationStore:
    def __init__(self, redis: Redis, prefix: str, backlog: int, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.backlog = backlog
        self.ttl_s = ttl_s
        self._deliver = redis.register_script(_DELIVER)

    def channel(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def _keys(self, user_id: str) -> list[str]:
        return [
            f"{self.prefix}notify:seq:{user_id}",
            f"{self.prefix}notify:ids:{user_id}",
            f"{self.prefix}notify:log:{user_id}",
            self.channel(user_id),
        ]

    async def deliver(self, user_id: str, notification_id: str, message: str) -> Delivered:
        """Give the notification the user's next sequence, keep it and publish it, once."""
        if message.count(SEQUENCE_PLACEHOLDER) != 1:
            raise ValueError("a message needs exactly one sequence placeholder")
        args = [notification_id, message, self.backlog, self.ttl_s]
        sequence, receivers = await self._deliver(keys=self._keys(user_id), args=args)
        sequence, receivers = int(sequence), int(receivers)
        if sequence > 0:
            message = message.replace(SEQUENCE_PLACEHOLDER, f'"sequence":{sequence}', 1)
        return Delivered(sequence, receivers, message)

    async def after(self, user_id: str, sequence: int) -> Backlog:
        """Every retained message with a sequence above ``sequence``."""
        seq_key, _, log_key, _ = self._keys(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(seq_key)
            pipe.zrangebyscore(log_key, f"({sequence}", "+inf", withscores=True)
            last_raw, rows = await pipe.execute()
        last = int(last_raw or 0)
        messages = [bytes(member) for member, _ in rows]
        first = int(rows[0][1]) if rows else last + 1
        # Ahead of the store: its keys expired and the sequence started again.
        trimmed = sequence > last or (sequence < last and first > sequence + 1)
        return Backlog(messages, last, trimmed)
