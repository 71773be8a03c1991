"""Wait for the accounts agent's decision on a request: one reader of ``account-events-v1``.

A request published on ``account-commands-v1`` is answered on ``account-events-v1`` by exactly
one ``RequestAccepted`` or ``RequestRefused`` with its ``requestId``. Each API process runs one
:class:`DecisionWaiter`: a ``read_committed`` consumer over every partition of the topic, with no
consumer group (every process must see every decision), starting at the end (older decisions
answer nobody here). It resolves the futures registered for a request id::

    async with DecisionWaiter(settings) as waiter:
        waiting = waiter.expect(request.request_id)     # before publishing, or it can be missed
        await publish(request)
        decision = await waiter.wait(waiting, timeout_s=2.0)   # None: not decided in time

The benchmark (``bench/``) uses it the same way to time a request to its decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition

from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.kafka_io import KafkaUnavailableError, consumer
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import RequestAccepted, RequestRefused
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = ["Decision", "DecisionWaiter", "Waiting", "close_quietly"]

log = logging.getLogger(__name__)

Decision = RequestAccepted | RequestRefused


async def close_quietly(stack: AsyncExitStack, what: str) -> None:
    """Close Kafka clients on the way out without letting their errors escape.

    aiokafka 0.14 can raise CancelledError out of ``stop()`` when the broker is gone (its fetch
    task's cancellation leaks); that is not a cancellation of ours unless this task is being
    cancelled, and must not break the app's shutdown."""
    try:
        await stack.aclose()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("%s: Kafka client stopped uncleanly (broker gone)", what)
    except Exception as exc:
        log.warning("%s: Kafka client stopped uncleanly: %s", what, exc)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A registration: the request id and the future its decision resolves."""

    request_id: str
    future: asyncio.Future[Decision]


class DecisionWaiter:
    """Resolves registered request ids with their decisions, read from ``account-events-v1``."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.topic = catalog(settings).account_events.name
        self.timeout_s = timeout_s
        self._waiting: dict[str, list[asyncio.Future[Decision]]] = {}
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None
        #: Decisions read, and records that were not decisions or could not be decoded.
        self.decisions_read = 0
        self.records_skipped = 0

    async def start(self) -> None:
        """Assign every partition at its current end; raises KafkaUnavailableError."""
        stack = AsyncExitStack()
        try:
            reader = await stack.enter_async_context(
                consumer(
                    self.settings,
                    group_id=None,
                    timeout_s=self.timeout_s,
                    auto_offset_reset="latest",
                    fetch_max_wait_ms=100,
                )
            )
            await self._assign_at_end(reader)
        except BaseException:
            await close_quietly(stack, "decision reader")
            raise
        self._stack = stack
        self._task = asyncio.create_task(self._run(reader), name="decision-waiter")

    async def _assign_at_end(self, reader: AIOKafkaConsumer) -> None:
        servers = self.settings.kafka_bootstrap_servers
        try:
            async with asyncio.timeout(self.timeout_s):
                # A topic created a moment ago can take a few metadata rounds to show up
                # (aiokafka has no public call that refreshes a consumer's metadata).
                while not (partitions := reader.partitions_for_topic(self.topic)):
                    await reader._client.force_metadata_update()
                    if not (partitions := reader.partitions_for_topic(self.topic)):
                        await asyncio.sleep(0.1)
                assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
                reader.assign(assigned)
                await reader.seek_to_end(*assigned)
                # position() resolves the end offsets now: a request registered after start()
                # returns cannot have its decision land before the reader's starting point.
                for partition in assigned:
                    await reader.position(partition)
        except TimeoutError:
            missing = LookupError(f"no topic {self.topic}; `brokerflow stack up` creates it")
            raise KafkaUnavailableError(servers, missing) from missing

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stack is not None:
            await close_quietly(self._stack, "decision reader")
            self._stack = None
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting.clear()

    async def __aenter__(self) -> DecisionWaiter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def expect(self, request_id: str) -> Waiting:
        """Register interest in ``request_id``'s decision. Call before publishing the request."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, []).append(future)
        return Waiting(request_id, future)

    def forget(self, waiting: Waiting) -> None:
        futures = self._waiting.get(waiting.request_id)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(waiting.future)
        if not futures:
            del self._waiting[waiting.request_id]
        waiting.future.cancel()

    async def wait(self, waiting: Waiting, timeout_s: float) -> Decision | None:
        """The decision, or None if none came within ``timeout_s``; forgets the registration."""
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                return await asyncio.shield(waiting.future)
        except TimeoutError:
            return None
        finally:
            self.forget(waiting)

    @property
    def pending(self) -> int:
        """Request ids registered and not decided yet."""
        return len(self._waiting)

    async def _run(self, reader: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await reader.getmany(timeout_ms=500, max_records=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: aiokafka reconnects; keep reading
                log.warning("decision reader: %s; retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._resolve(record.value)

    def _resolve(self, value: bytes | None) -> None:
        if value is None:
            self.records_skipped += 1
            return
        try:
            message = decode(value)
        except (SchemaError, UnknownMessageError) as exc:
            self.records_skipped += 1
            log.warning("decision reader: skipped a record that is not a decision: %s", exc)
            return
        if not isinstance(message, RequestAccepted | RequestRefused):
            self.records_skipped += 1  # CancelRequestRejected: an event, not a decision
            return
        self.decisions_read += 1
        for future in self._waiting.pop(message.request_id, ()):
            if not future.done():
                future.set_result(message)
