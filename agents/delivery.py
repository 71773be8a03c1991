"""How the worker's consumer hands fetched records to the agents' streams.

Kept apart from :mod:`brokerflow.agents.exactly_once` (which needs the app) so that a benchmark's
do-nothing Faust app can use the same loop (``bench/faust_null_agent.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.consumer import Consumer as FaustConsumer

__all__ = ["install_direct_delivery"]


def install_direct_delivery() -> None:
    """Replace Faust's per-record delivery loop with :func:`_drain_messages_directly` (every
    consumer of the process; idempotent). ``EXCHANGE_DIRECT_DELIVERY=false`` leaves Faust's."""
    FaustConsumer._drain_messages = _drain_messages_directly  # type: ignore[method-assign]


async def _drain_messages_directly(self: Any, fetcher: Any) -> None:  # pragma: no cover
    """Faust's ``Consumer._drain_messages`` with each record handed over by a plain ``await``.

    Faust awaits ``wait_first(callback(message), suspend_flow.wait())`` per record: two tasks, a
    future and a cancellation each, about 50 us, half of what a worker spent delivering a record
    (a do-nothing agent: 9,933 records/s, 19,431 with this loop). The race only matters while a
    rebalance suspends the flow, and then this loop does what Faust's does. A record whose
    hand-over waits for room in a full stream buffer is still delivered when the agent takes
    the next batch (the agents never stop taking, see :meth:`ExactlyOnceAgent.take`), where
    Faust would drop it; the agents skip a record of a partition they do not own or below the
    next offset (:meth:`ExactlyOnceAgent.admit`), so either way nothing is processed twice.
    Everything else (read offsets, gaps of acking topics, ``commit_every``) is Faust's loop.
    """
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flow_suspended = self.suspend_flow.is_set
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            records = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read_offset = get_read_offset(tp)
                    if read_offset is None or offset >= read_offset:
                        gap = offset - (read_offset or 0)
                        if gap > 1 and read_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, read_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if flow_suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)
