"""The replay check's comparison: what counts as the same, what as the first difference."""

from __future__ import annotations

from typing import Any

from brokerflow.exchange.replaycheck import ReplayResult, first_divergence


def event(sequence: int, kind: str = "OrderAccepted", time: str = "T1", **extra: Any) -> dict:
    return {"type": kind, "symbol": "PETR4", "sequence": sequence, "eventTime": time, **extra}


def result(*events: tuple[dict[str, Any], tuple[int, int]], start: int = 0) -> ReplayResult:
    replay = ReplayResult(start_sequence={"PETR4": start}, last_time={"PETR4": "T2"})
    replay.events["PETR4"].extend(events)
    return replay


def test_the_same_events_are_identical_and_volatile_fields_do_not_count() -> None:
    recorded = {"PETR4": [event(1), event(2, receiveTime="whenever"), event(3, time="T9")]}
    replayed = result((event(1), (0, 5)), (event(2), (0, 6)))
    assert first_divergence(recorded, replayed) is None  # sequence 3 is a later command's


def test_the_first_different_event_names_the_command_that_caused_it() -> None:
    recorded = {"PETR4": [event(4), event(5, "OrderAccepted"), event(6)]}
    replayed = result(
        (event(4), (1, 10)), (event(5, "OrderRejected"), (1, 11)), (event(6), (1, 12)), start=3
    )
    found = first_divergence(recorded, replayed)
    assert found is not None
    assert (found.symbol, found.sequence, found.command) == ("PETR4", 5, (1, 11))
    assert found.recorded == event(5, "OrderAccepted")
    assert found.replayed == event(5, "OrderRejected")


def test_an_event_the_replay_did_not_emit_within_the_range_is_a_difference() -> None:
    recorded = {"PETR4": [event(1), event(2, "OrderFilled", time="T2")]}
    found = first_divergence(recorded, result((event(1), (0, 0))))
    assert found is not None
    assert (found.sequence, found.command, found.replayed) == (2, None, None)
    assert found.recorded == event(2, "OrderFilled", time="T2")


def test_events_before_the_range_are_not_compared() -> None:
    recorded = {"PETR4": [event(1, "Anything"), event(2)]}
    assert first_divergence(recorded, result((event(2), (0, 1)), start=1)) is None
