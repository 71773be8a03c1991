"""Record a live session from the fake WebSocket server, replay it, get the same records."""

from __future__ import annotations

import contextlib
import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brokerflow.connectors import (
    BinanceStream,
    Frame,
    TapeError,
    TapePlayer,
    TapeRecorder,
    parse_frame,
    read_tape,
)
from brokerflow.connectors.tape import decode_tape_line, encode_tape_line
from brokerflow.settings import Settings

from .fakes import FakeBinanceServer, FakeClock, SteppingClock, combined, send, take, trade_frame

START = datetime(2026, 4, 23, 13, 30, tzinfo=UTC)
BOOK = combined(
    "btcusdt@bookTicker",
    {"u": 9, "s": "BTCUSDT", "b": "94112.00", "B": "1.2", "a": "94112.01", "A": "0.3"},
)
LIVE_FRAMES = [trade_frame(1), BOOK, "not json", trade_frame(2)]


async def record_live_session(tape: Path) -> list[Frame]:
    """Four frames from the fake server, received 0.5 s apart (by the injected clock)."""
    async with FakeBinanceServer([send(*LIVE_FRAMES)]) as server:
        stream = BinanceStream(
            Settings(_env_file=None, binance_ws_base=server.base_url, binance_symbols=["BTCUSDT"]),
            now=SteppingClock(START, timedelta(milliseconds=500)),
        )
        with TapeRecorder(tape) as recorder:
            async with contextlib.aclosing(recorder.tee(stream.frames())) as frames:
                live = await take(frames, len(LIVE_FRAMES))
    assert recorder.frames_written == len(LIVE_FRAMES)
    return live


@pytest.mark.parametrize("name", ["live.jsonl", "live.jsonl.gz"])
async def test_a_replay_as_fast_as_possible_parses_to_the_live_records(
    tmp_path: Path, name: str
) -> None:
    tape = tmp_path / name
    live = await record_live_session(tape)

    replayed = [frame async for frame in TapePlayer(tape, speed=None).frames()]
    results = [result async for result in TapePlayer(tape, speed=None).results()]

    assert replayed == live
    assert [frame.raw for frame in replayed] == LIVE_FRAMES
    assert [frame.receive_time for frame in replayed] == [
        START + timedelta(milliseconds=500 * n) for n in range(4)
    ]
    assert results == [parse_frame(*frame) for frame in live]
    assert [len(result.records) for result in results] == [1, 1, 0, 1]
    assert results[2].dead_letters[0].reason == "NOT_JSON"


@pytest.mark.parametrize(
    ("speed", "expected_sleeps"), [(1.0, [0.5, 0.5, 0.5]), (10.0, [0.05, 0.05, 0.05])]
)
async def test_replay_keeps_the_recorded_gaps_divided_by_the_speed(
    tmp_path: Path, speed: float, expected_sleeps: list[float]
) -> None:
    tape = tmp_path / "live.jsonl"
    await record_live_session(tape)
    clock = FakeClock(START)

    player = TapePlayer(tape, speed=speed, sleep=clock.sleep, clock=clock.monotonic)
    replayed = [frame async for frame in player.frames()]

    assert len(replayed) == 4
    assert clock.delays == pytest.approx(expected_sleeps)


async def test_replay_pacing_absorbs_the_consumers_own_time(tmp_path: Path) -> None:
    tape = tmp_path / "live.jsonl"
    await record_live_session(tape)
    clock = FakeClock(START)

    player = TapePlayer(tape, speed=1.0, sleep=clock.sleep, clock=clock.monotonic)
    async for _ in player.frames():
        clock.current += timedelta(milliseconds=200)  # the consumer takes 0.2 s per frame

    assert clock.delays == pytest.approx([0.3, 0.3, 0.3])


def test_the_tape_line_format(tmp_path: Path) -> None:
    frame = Frame("brapi", '{"results":[{"longName":"Petróleo"}]}', START)

    line = encode_tape_line(frame)

    assert line == (
        '{"recv":"2026-04-23T13:30:00.000000Z","vendor":"brapi",'
        '"raw":"{\\"results\\":[{\\"longName\\":\\"Petr\\u00f3leo\\"}]}"}\n'
    )
    assert decode_tape_line(line) == frame


def test_reading_resumes_from_a_line(tmp_path: Path) -> None:
    tape = tmp_path / "t.jsonl.gz"
    frames = [Frame("binance", trade_frame(n), START + timedelta(seconds=n)) for n in range(5)]
    with TapeRecorder(tape) as recorder:
        for frame in frames:
            recorder.write(frame)

    assert list(read_tape(tape, start_line=3)) == frames[3:]
    assert gzip.decompress(tape.read_bytes()).count(b"\n") == 5


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("{not a tape line", "not a tape line"),
        ('{"recv":"2026-04-23T13:30:00","vendor":"binance","raw":"{}"}', "no time zone"),
        ('{"recv":"2026-04-23T13:30:00Z","vendor":"kraken","raw":"{}"}', "vendor must be"),
        ('{"recv":"2026-04-23T13:30:00Z","vendor":"binance"}', "not a tape line"),
    ],
)
def test_a_damaged_tape_names_the_file_and_line(tmp_path: Path, line: str, complaint: str) -> None:
    tape = tmp_path / "bad.jsonl"
    tape.write_text(encode_tape_line(Frame("binance", "{}", START)) + line + "\n")

    with pytest.raises(TapeError, match=rf"bad\.jsonl:2: .*{complaint}"):
        list(read_tape(tape))


def test_a_negative_speed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed"):
        TapePlayer(tmp_path / "t.jsonl", speed=-1)
