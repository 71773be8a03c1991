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

Looping a tape and moving it to "now" (``brokerflow run`` keeps a live system fed this way):
:func:`shift_frame` moves a frame's receive time and the event times inside its raw text by a
whole number of seconds (so every precision and time format survives unchanged) and, for pass
``n`` of a loop, moves Binance trade and book-update ids by ``n`` times their range in the tape
(:func:`measure_tape`), so no pass repeats an id or a time of another: downstream dedup (the
MongoDB history's ids, the Brapi repeated-quote filter) treats each pass as new data.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import IO, Self

from brokerflow.errors import BrokerflowError
from brokerflow.schemas.base import format_utc

from ._backoff import Sleep
from ._frames import Frame, ParseResult, from_epoch_millis, from_epoch_seconds
from ._parse import VENDORS, parse_frame

__all__ = [
    "TapeError",
    "TapeExtent",
    "TapePlayer",
    "TapeRecorder",
    "decode_tape_line",
    "encode_tape_line",
    "measure_tape",
    "read_tape",
    "sample_tape_path",
    "shift_frame",
    "shift_to_now",
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


# --- looping and shifting a tape ------------------------------------------------------------------
#: Binance fields moved by a shift: event and trade times (epoch ms), trade and book-update ids.
_BINANCE_FIELDS = re.compile(r'"([ETtu])"(\s*:\s*)(\d+)')
_BINANCE_SYMBOL = re.compile(r'"s"\s*:\s*"([^"\\]*)"')
#: Brapi times: ISO 8601 text (the seconds part is moved; fraction and zone kept) or UNIX seconds.
_BRAPI_TIMES = re.compile(r'"(regularMarketTime|requestedAt)"(\s*:\s*)(?:"([^"\\]*)"|(\d+))')
_ISO_SECONDS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(.*)")
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class TapeExtent:
    """What looping a tape needs to know, read once before the first pass (:func:`measure_tape`).

    ``period`` is the least one pass must move times past the previous pass: whole seconds,
    longer than the span of the receive times and of each symbol's event times, so no time of
    one pass meets the next one's. ``id_strides`` maps ``(symbol, "t" | "u")`` to the range of
    that symbol's trade or book-update ids: pass ``n`` adds ``n`` times it, so the ids of
    successive passes follow each other without overlap.
    """

    first_receive: datetime
    period: timedelta
    id_strides: Mapping[tuple[str, str], int]


def measure_tape(frames: Iterable[Frame]) -> TapeExtent:
    """Read every frame once: first receive time, loop period and id strides (see above).

    Bad frames count only where they have the fields; they stay bad in every pass.
    """
    first: datetime | None = None
    last: datetime | None = None
    times: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    ids: dict[tuple[str, str], tuple[int, int]] = {}

    def widen(key: tuple[str, str], value: datetime) -> None:
        low, high = times.get(key, (value, value))
        times[key] = (min(low, value), max(high, value))

    for frame in frames:
        first = frame.receive_time if first is None else first
        last = frame.receive_time
        if frame.vendor == "binance":
            match = _BINANCE_SYMBOL.search(frame.raw)
            symbol = match.group(1) if match else ""
            for field, _, digits in _BINANCE_FIELDS.findall(frame.raw):
                if field in "ET":
                    widen((symbol, field), from_epoch_millis(int(digits)))
                else:
                    low, high = ids.get((symbol, field), (int(digits), int(digits)))
                    ids[(symbol, field)] = (min(low, int(digits)), max(high, int(digits)))
        else:
            for symbol, moment in _brapi_market_times(frame.raw):
                widen((symbol, "regularMarketTime"), moment)
    if first is None or last is None:
        raise TapeError("the tape has no frame to loop")
    span = max([last - first, *(high - low for low, high in times.values())])
    return TapeExtent(
        first_receive=first,
        period=_SECOND * (span // _SECOND + 1),
        id_strides={key: high - low + 1 for key, (low, high) in ids.items()},
    )


def _brapi_market_times(raw: str) -> Iterator[tuple[str, datetime]]:
    try:
        body = json.loads(raw, parse_float=Decimal)
        results = body.get("results") if isinstance(body, dict) else None
    except ValueError:
        return
    for entry in results if isinstance(results, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
            continue
        value = entry.get("regularMarketTime")
        try:
            if isinstance(value, str):
                moment = datetime.fromisoformat(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                moment = from_epoch_seconds(value)
            else:
                continue
        except ValueError:
            continue
        if moment.tzinfo is not None:
            yield entry["symbol"], moment


def shift_to_now(recorded: datetime, now: datetime, at_least: timedelta | None = None) -> timedelta:
    """The whole-second shift that puts ``recorded`` at ``now`` (not after it), never below
    ``at_least`` (the previous pass's shift plus the period, or the shift a resumed pass had).

    >>> from datetime import UTC
    >>> shift_to_now(datetime(2026, 1, 2, 12, tzinfo=UTC), datetime(2026, 1, 2, 12, 0, 5, 900_000,
    ...              tzinfo=UTC))
    datetime.timedelta(seconds=5)
    """
    shift = _SECOND * ((now - recorded) // _SECOND)
    return shift if at_least is None else max(shift, at_least)


def shift_frame(
    frame: Frame, shift: timedelta, *, pass_number: int = 0, extent: TapeExtent | None = None
) -> Frame:
    """The frame moved by ``shift`` (whole seconds), its ids moved to pass ``pass_number``.

    Only the numbers are rewritten; the rest of the raw text stays byte for byte, so a frame
    that was bad stays bad in the same way. Pass 0 keeps its ids (no ``extent`` needed).
    """
    if shift % _SECOND:
        raise ValueError(f"a tape shift must be whole seconds, not {shift}")
    if pass_number and extent is None:
        raise ValueError("moving ids to a later pass needs the tape's extent (measure_tape)")
    seconds = shift // _SECOND
    if frame.vendor == "binance":
        match = _BINANCE_SYMBOL.search(frame.raw)
        symbol = match.group(1) if match else ""

        def binance(found: re.Match[str]) -> str:
            field, colon, digits = found.groups()
            if field in "ET":
                moved = int(digits) + seconds * 1000
            else:
                stride = extent.id_strides.get((symbol, field), 0) if extent else 0
                moved = int(digits) + pass_number * stride
            return f'"{field}"{colon}{moved}'

        raw = _BINANCE_FIELDS.sub(binance, frame.raw)
    else:

        def brapi(found: re.Match[str]) -> str:
            field, colon, text, digits = found.groups()
            if digits is not None:
                return f'"{field}"{colon}{int(digits) + seconds}'
            whole = _ISO_SECONDS.fullmatch(text)
            if whole is None:
                return found.group(0)
            try:
                moved = datetime.fromisoformat(whole.group(1)) + shift
            except ValueError:
                return found.group(0)
            return f'"{field}"{colon}"{moved.strftime("%Y-%m-%dT%H:%M:%S")}{whole.group(2)}"'

        raw = _BRAPI_TIMES.sub(brapi, frame.raw)
    return Frame(frame.vendor, raw, frame.receive_time + shift)
