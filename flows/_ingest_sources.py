"""Bytewax sources of raw vendor frames for the ingest flow: a tape, Binance, Brapi.

The connectors are async iterators; Bytewax sources are synchronous partitions whose
``next_batch`` must not block. The tape needs no event loop at all (it is read line by line, so
its resume state is a line number and recovery resumes without re-reading what was snapshotted);
the live sources run their connector on a private event loop, one per partition, and hand over
whatever arrived within a short timeout (``bytewax.inputs.batch_async``).

A tape can loop (``TAPE_LOOP``) and be moved to "now" (``TAPE_SHIFT_TO_NOW``): each pass of a
partition starts over at the tape's first line, its times shifted by a whole number of seconds
and its ids moved past the previous pass's (:func:`brokerflow.connectors.tape.shift_frame`). With
the shift on, the first frame a partition hands on in a pass, or after a restart, is "now" (never
earlier than the pass's times so far, so times only move forward); a restarted partition re-sends
the frames after its snapshot with their old ids (the history keeps one of each) and new times.

Order per symbol is what Kafka consumers rely on, so a symbol's frames always travel through one
partition on one worker: the tape is split by a cheap routing key (the symbol in a Binance
stream name, the vendor for Brapi bodies), Binance symbols are dealt out to workers, and Brapi
polls from worker 0 only (its request budget is global).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import math
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
    batch_async,
)

from brokerflow.connectors import BinanceStream, BrapiPoller, Frame
from brokerflow.connectors.tape import (
    TapeExtent,
    decode_tape_line,
    measure_tape,
    read_tape,
    shift_frame,
    shift_to_now,
)
from brokerflow.settings import Settings

__all__ = [
    "BinanceSource",
    "BrapiSource",
    "TapePosition",
    "TapeSource",
    "routing_key",
    "tape_partition_of",
]

#: ``"stream":"btcusdt@`` inside a tape line, where the frame text is JSON-escaped.
_ESCAPED_STREAM = re.compile(r'\\"stream\\":\s*\\"([A-Za-z0-9_-]+)@')
_PLAIN_STREAM = re.compile(r'"stream":\s*"([A-Za-z0-9_-]+)@')
#: How long a live partition waits for frames before yielding to the rest of the worker.
_LIVE_POLL = timedelta(milliseconds=50)


def routing_key(text: str) -> str:
    """The symbol a Binance frame (or tape line) is about, lower-case; ``""`` when not visible.

    Cheap on purpose: it runs on every tape line before parsing, only to keep one symbol's
    frames in one partition. A frame it cannot route still goes somewhere (partition of ``""``).

    >>> routing_key('{"stream":"btcusdt@trade","data":{}}')
    'btcusdt'
    """
    match = _ESCAPED_STREAM.search(text) or _PLAIN_STREAM.search(text)
    return match.group(1).lower() if match else ""


def tape_partition_of(line: str, partitions: int) -> int:
    """Which tape partition a line belongs to: CRC32 of its routing key, stable across runs.

    Brapi bodies (no stream name) all go where the key ``"brapi"`` lands.
    """
    key = "brapi" if '"vendor":"brapi"' in line else routing_key(line)
    return zlib.crc32(key.encode()) % partitions


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="\n")
    return path.open("r", encoding="utf-8", newline="\n")


#: A looping or shifted tape partition's resume state: (pass, next line, shift in whole seconds
#: or ``None`` before the first pass is anchored). A plain replay's state is the next line alone.
TapePosition = tuple[int, int, int | None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _TapePartition(StatefulSourcePartition[Frame, int | TapePosition]):
    """One symbol group of a tape. Resume state: the number of lines already handed on (with
    the pass and the shift when the tape loops or is shifted: :data:`TapePosition`)."""

    def __init__(
        self,
        path: Path,
        index: int,
        partitions: int,
        next_line: int | TapePosition,
        speed: float,
        batch_size: int,
        stop_at_end: bool,
        clock: Callable[[], float] = time.monotonic,
        *,
        loop: TapeExtent | None = None,
        shift_to_now: bool = False,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._path = path
        self._index = index
        self._partitions = partitions
        position = next_line if isinstance(next_line, tuple) else (0, next_line, None)
        self._pass, self._next_line, shift = position
        # The shift in force; until the pass is anchored (its first frame), the least it may be.
        self._shift: timedelta | None = None if shift is None else timedelta(seconds=shift)
        self._anchored = False
        self._loop = loop
        self._shift_to_now = shift_to_now
        self._now = now
        self._speed = speed
        self._batch_size = batch_size
        self._stop_at_end = stop_at_end
        self._clock = clock
        self._file = _open_text(path)
        self._lines = enumerate(self._file)
        self._pending: tuple[int, Frame] | None = None
        self._frames_in_pass = 0
        # Pacing anchor: (first recorded receive time, clock reading) of this pass or execution.
        self._anchor: tuple[datetime, float] | None = None
        self._awake: datetime | None = None
        self._exhausted = False

    def _next_frame(self) -> tuple[int, Frame] | None:
        if self._pending is not None:
            return self._pending
        while True:
            for number, line in self._lines:
                if number < self._next_line or not line.strip():
                    continue
                if tape_partition_of(line, self._partitions) != self._index:
                    continue
                frame = decode_tape_line(line, where=f"{self._path}:{number + 1}")
                self._pending = (number, self._moved(frame))
                return self._pending
            # A partition with no line of its own would loop for ever without handing anything.
            if self._loop is None or (self._frames_in_pass == 0 and self._next_line == 0):
                return None
            self._start_next_pass(self._loop)

    def _start_next_pass(self, extent: TapeExtent) -> None:
        self._file.close()
        self._file = _open_text(self._path)
        self._lines = enumerate(self._file)
        self._pass += 1
        self._next_line = 0
        self._frames_in_pass = 0
        self._anchor = None
        if self._shift_to_now:
            self._shift = None if self._shift is None else self._shift + extent.period
            self._anchored = False
        else:
            self._shift = extent.period * self._pass

    def _moved(self, frame: Frame) -> Frame:
        """The frame as this pass hands it on (unchanged on a plain replay)."""
        if self._loop is None and not self._shift_to_now:
            return frame
        if not self._anchored:
            if self._shift_to_now:
                self._shift = shift_to_now(frame.receive_time, self._now(), self._shift)
            elif self._loop is not None:
                self._shift = self._loop.period * self._pass
            self._anchored = True
        return shift_frame(
            frame, self._shift or timedelta(0), pass_number=self._pass, extent=self._loop
        )

    def _due_in(self, frame: Frame) -> float:
        """Seconds until a paced replay should hand this frame on (0 at full speed)."""
        if not self._speed:
            return 0.0
        if self._anchor is None:
            self._anchor = (frame.receive_time, self._clock())
        recorded, started = self._anchor
        offset = (frame.receive_time - recorded).total_seconds() / self._speed
        return started + offset - self._clock()

    def next_batch(self) -> list[Frame]:
        batch: list[Frame] = []
        self._awake = None
        while len(batch) < self._batch_size:
            pending = self._next_frame()
            if pending is None:
                self._exhausted = True
                break
            number, frame = pending
            wait = self._due_in(frame)
            if wait > 0:
                self._awake = datetime.now(UTC) + timedelta(seconds=wait)
                break
            batch.append(frame)
            self._pending = None
            self._frames_in_pass += 1
            # Every line up to this one is handled: skipped (other partition) or handed on.
            self._next_line = number + 1
        if self._exhausted and not batch:
            if self._stop_at_end:
                raise StopIteration
            self._awake = datetime.now(UTC) + timedelta(seconds=60)
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int | TapePosition:
        if self._loop is None and not self._shift_to_now:
            return self._next_line
        shift = None if self._shift is None else self._shift // timedelta(seconds=1)
        return (self._pass, self._next_line, shift)

    def close(self) -> None:
        self._file.close()


class TapeSource(FixedPartitionedSource[Frame, int | TapePosition]):
    """A recorded tape as ``partitions`` symbol groups, each resumable by line number.

    ``speed`` as for :class:`brokerflow.connectors.TapePlayer`: 1 keeps the recorded pace, 0
    replays as fast as possible. Each partition is paced on its own clock from its first frame
    (of each pass, when it loops). With ``stop_at_end`` the partition ends at the end of the
    tape; otherwise it idles there. ``loop`` starts it over instead, for ever (the tape is read
    once first to measure it); ``shift_to_now`` moves its times so each pass starts at "now"
    (see the module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int = 1,
        speed: float = 0.0,
        batch_size: int = 1000,
        stop_at_end: bool = True,
        loop: bool = False,
        shift_to_now: bool = False,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if speed < 0 or math.isnan(speed):
            raise ValueError(f"speed must be 0 (as fast as possible) or positive: {speed}")
        self.path = Path(path)
        self.partitions = partitions
        self.speed = 0.0 if math.isinf(speed) else speed
        self.batch_size = batch_size
        self.stop_at_end = stop_at_end
        self.loop = loop
        self.shift_to_now = shift_to_now
        self.now = now
        self._extent: TapeExtent | None = None
        self._measuring = threading.Lock()

    def extent(self) -> TapeExtent:
        """The tape's loop period and id strides, measured once (workers share the source)."""
        with self._measuring:
            if self._extent is None:
                self._extent = measure_tape(read_tape(self.path))
            return self._extent

    def list_parts(self) -> list[str]:
        return [f"tape-{index}-of-{self.partitions}" for index in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | TapePosition | None
    ) -> _TapePartition:
        index = int(for_part.split("-")[1])
        return _TapePartition(
            self.path,
            index,
            self.partitions,
            resume_state or 0,
            self.speed,
            self.batch_size,
            self.stop_at_end,
            loop=self.extent() if self.loop else None,
            shift_to_now=self.shift_to_now,
            now=self.now,
        )


class _AsyncFramesPartition(StatelessSourcePartition[Frame]):
    """Drives an async frame iterator on a private event loop, ``batch_size`` at a time."""

    def __init__(
        self,
        frames: AsyncIterator[Frame],
        batch_size: int,
        frame_limit: int | None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._frames = frames
        self._on_close = on_close
        self._batches = batch_async(frames, _LIVE_POLL, batch_size, loop=self._loop)
        self._remaining = frame_limit

    def next_batch(self) -> list[Frame]:
        if self._remaining is not None and self._remaining <= 0:
            raise StopIteration
        batch = next(self._batches)
        if self._remaining is not None:
            batch = batch[: self._remaining]
            self._remaining -= len(batch)
        return batch

    def close(self) -> None:
        loop = self._loop
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                loop.run_until_complete(aclose())
        if self._on_close is not None:  # e.g. the poller's HTTP client, on its own loop
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._on_close())
        loop.close()


class _NothingPartition(StatelessSourcePartition[Frame]):
    """A worker with nothing to read (no symbols dealt to it, or not worker 0 for Brapi)."""

    def next_batch(self) -> list[Frame]:
        raise StopIteration


class BinanceSource(DynamicSource[Frame]):
    """Live Binance frames; worker ``i`` of ``n`` connects for symbols ``i, i + n, ...``.

    Each worker's :class:`BinanceStream` shards its own symbols by ``WS_SHARD_SIZE``.
    ``frame_limit`` (per worker) ends the partition after that many frames (tests, sampling).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        frame_limit: int | None = None,
        stream_factory: Callable[[Settings, list[str]], BinanceStream] | None = None,
    ) -> None:
        self.settings = settings
        self.frame_limit = frame_limit
        self._factory = stream_factory or (lambda s, symbols: BinanceStream(s, symbols=symbols))

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSourcePartition[Frame]:
        symbols = self.settings.binance_symbols[worker_index::worker_count]
        if not symbols:
            return _NothingPartition()
        stream = self._factory(self.settings, symbols)
        return _AsyncFramesPartition(
            stream.frames(), self.settings.ingest_batch_size, self.frame_limit
        )


class BrapiSource(DynamicSource[Frame]):
    """Live Brapi response bodies, polled by worker 0 only: the request budget is global."""

    def __init__(self, settings: Settings, *, frame_limit: int | None = None) -> None:
        self.settings = settings
        self.frame_limit = frame_limit

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSourcePartition[Frame]:
        if worker_index != 0:
            return _NothingPartition()
        poller = BrapiPoller(self.settings)
        return _AsyncFramesPartition(
            poller.responses(),
            self.settings.ingest_batch_size,
            self.frame_limit,
            on_close=poller.aclose,
        )
