"""Record what a live connector receives, and play it back through the same parse step.

A tape is JSON Lines, one frame per line, gzip-compressed when the file name ends in ``.gz``::

    {"recv":"2026-04-23T13:30:00.052113Z","vendor":"binance","raw":"{\\"stream\\":..."}

``recv`` is our receive time, ``vendor`` picks the parser, ``raw`` is the frame's text exactly as
it arrived (a WebSocket frame; for Brapi an HTTP response body). Nothing is normalized on the way
to disk, so a tape recorded today replays through tomorrow's parser, and a bug found in
production replays offline (cryptofeed's ``sample_data``).

Record a live session and replay it ten times faster::

    with TapeRecorder("session.jsonl.gz") as recorder:
        async for frame in recorder.tee(BinanceStream().frames()):
            ...
    async for result in TapePlayer("session.jsonl.gz", speed=10).results():
        ...

The bundled :func:`sample_tape_path` (30 minutes of synthetic Binance and Brapi traffic, made
by ``python -m brokerflow.tapes.market``) feeds the ingest benchmark.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import IO, Self

from brokerflow.errors import BrokerflowError
from brokerflow.schemas.base import format_utc

from ._backoff import Sleep
from ._frames import Frame, ParseResult
from ._parse import VENDORS, parse_frame

__all__ = [
    "TapeError",
    "TapePlayer",
    "TapeRecorder",
    "decode_tape_line",
    "encode_tape_line",
    "read_tape",
    "sample_tape_path",
]

StrPath = str | PathLike[str]


class TapeError(BrokerflowError):
    """A tape file is unreadable: the message names the file and the line."""


def sample_tape_path() -> Path:
    """The bundled sample tape, ``brokerflow/data/sample_tape.jsonl.gz``."""
    return Path(str(files("brokerflow") / "data" / "sample_tape.jsonl.gz"))


def encode_tape_line(frame: Frame) -> str:
    """One tape line, newline included. ASCII-only (``\\u`` escapes), so any text survives."""
    record = {"recv": format_utc(frame.receive_time), "vendor": frame.vendor, "raw": frame.raw}
    return json.dumps(record, separators=(",", ":")) + "\n"


def decode_tape_line(line: str, *, where: str = "tape") -> Frame:
    try:
        record = json.loads(line)
        receive_time = datetime.fromisoformat(record["recv"])
        vendor, raw = record["vendor"], record["raw"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TapeError(f"{where}: not a tape line ({type(exc).__name__}: {exc})") from None
    if receive_time.tzinfo is None:
        raise TapeError(f"{where}: recv {record['recv']!r} has no time zone")
    if vendor not in VENDORS or not isinstance(raw, str):
        raise TapeError(f"{where}: vendor must be one of {VENDORS} and raw a string")
    return Frame(vendor, raw, receive_time)


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8", newline="\n")
    return path.open(mode, encoding="utf-8", newline="\n")


def read_tape(path: StrPath, *, start_line: int = 0) -> Iterator[Frame]:
    """Every frame of a tape, in file order, without pacing (for batch jobs and benchmarks).

    ``start_line`` (0-based) skips lines already processed, to resume a replay.
    """
    tape = Path(path)
    with _open_text(tape, "r") as lines:
        for number, line in enumerate(lines):
            if number < start_line or not line.strip():
                continue
            yield decode_tape_line(line, where=f"{tape}:{number + 1}")


class TapeRecorder:
    """Append frames to a tape as they arrive (a sync context manager; writes are buffered)."""

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self.frames_written = 0
        self._file: IO[str] | None = _open_text(self.path, "a")

    def write(self, frame: Frame) -> None:
        if self._file is None:
            raise TapeError(f"{self.path}: the recorder is closed")
        self._file.write(encode_tape_line(frame))
        self.frames_written += 1

    async def tee(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Frame]:
        """Record each frame, then pass it on: ``async for f in recorder.tee(stream.frames())``."""
        async for frame in frames:
            self.write(frame)
            yield frame

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TapePlayer:
    """Replay a tape at its recorded pace, ``speed`` times faster, or as fast as possible.

    ``speed=1`` keeps the recorded gaps, ``10`` divides them by ten, ``None`` or ``0`` does not
    wait at all. Pacing is anchored to the start of the replay, so time spent by the consumer
    is not added on top of the gaps. Frames keep their recorded ``receive_time``: a replay
    produces exactly the records of the live session.
    """

    def __init__(
        self,
        path: StrPath,
        speed: float | None = 1.0,
        *,
        start_line: int = 0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and (speed < 0 or math.isnan(speed)):
            raise ValueError(f"speed must be positive, or 0/None for as fast as possible: {speed}")
        self.path = Path(path)
        self.speed = None if not speed or math.isinf(speed) else speed
        self.start_line = start_line
        self._sleep = sleep
        self._clock = clock

    async def frames(self) -> AsyncIterator[Frame]:
        first_recorded: datetime | None = None
        started = 0.0
        for frame in read_tape(self.path, start_line=self.start_line):
            if self.speed is None:
                await asyncio.sleep(0)  # let other tasks run during a fast replay
            elif first_recorded is None:
                first_recorded, started = frame.receive_time, self._clock()
            else:
                offset = (frame.receive_time - first_recorded).total_seconds() / self.speed
                wait = started + offset - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            yield frame

    async def results(self) -> AsyncIterator[ParseResult]:
        """Each frame through :func:`parse_frame`, exactly as the live ingest parses it."""
        async for frame in self.frames():
            yield parse_frame(*frame)
