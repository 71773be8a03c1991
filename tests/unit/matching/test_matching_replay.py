"""``brokerflow match``: a command tape in, the event tape out, bad lines on stderr."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from brokerflow.matching import Exchange, SymbolRules
from brokerflow.matching.replay import TapeDecoder, main, replay

SELL = (
    '{"op":"new","orderId":"s1","accountId":"a1","symbol":"PETR4","side":"SELL","type":"LIMIT",'
    '"timeInForce":"GTC","quantity":100,"price":"38.52","eventTime":"2026-01-02T13:00:00Z"}'
)
BUY = (
    '{"op":"new","orderId":"b1","accountId":"a2","symbol":"PETR4","side":"BUY","type":"LIMIT",'
    '"quantity":"40","price":"38.60"}'
)


def play(*lines: str, rules: dict[str, SymbolRules] | None = None) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    replay([line + "\n" for line in lines], out, err, rules)
    return out.getvalue().splitlines(), err.getvalue()


def test_a_small_tape_gives_exactly_these_lines() -> None:
    out, err = play(SELL, BUY)
    assert err == ""
    assert out == [
        '{"type":"OrderAccepted","schemaVersion":1,"orderId":"s1","accountId":"a1",'
        '"symbol":"PETR4","status":"OPEN","sequence":1,"filledQuantity":"0",'
        '"leavesQuantity":"100","eventTime":"2026-01-02T13:00:00.000000Z","receiveTime":null,'
        '"side":"SELL","orderType":"LIMIT","timeInForce":"GTC","quantity":"100",'
        '"price":"38.52"}',
        '{"type":"OrderAccepted","schemaVersion":1,"orderId":"b1","accountId":"a2",'
        '"symbol":"PETR4","status":"OPEN","sequence":2,"filledQuantity":"0",'
        '"leavesQuantity":"40","eventTime":"1970-01-01T00:00:00.000000Z","receiveTime":null,'
        '"side":"BUY","orderType":"LIMIT","timeInForce":"GTC","quantity":"40",'
        '"price":"38.60"}',
        '{"type":"TradeExecuted","schemaVersion":1,"tradeId":"PETR4-T1","symbol":"PETR4",'
        '"sequence":3,"price":"38.52","quantity":"40","aggressorSide":"BUY",'
        '"takerOrderId":"b1","makerOrderId":"s1","buyOrderId":"b1","sellOrderId":"s1",'
        '"buyAccountId":"a2","sellAccountId":"a1","eventTime":"1970-01-01T00:00:00.000000Z"}',
        '{"type":"OrderPartiallyFilled","schemaVersion":1,"orderId":"s1","accountId":"a1",'
        '"symbol":"PETR4","status":"PARTIALLY_FILLED","sequence":4,"filledQuantity":"40",'
        '"leavesQuantity":"60","eventTime":"1970-01-01T00:00:00.000000Z","receiveTime":null,'
        '"tradeId":"PETR4-T1","lastPrice":"38.52","lastQuantity":"40"}',
        '{"type":"OrderFilled","schemaVersion":1,"orderId":"b1","accountId":"a2",'
        '"symbol":"PETR4","status":"FILLED","sequence":5,"filledQuantity":"40",'
        '"leavesQuantity":"0","eventTime":"1970-01-01T00:00:00.000000Z","receiveTime":null,'
        '"tradeId":"PETR4-T1","lastPrice":"38.52","lastQuantity":"40"}',
    ]


def _summary(lines: list[str]) -> list[tuple[object, ...]]:
    events = [json.loads(line) for line in lines]
    return [
        (e["type"], e["symbol"], e["sequence"], e.get("orderId"), e.get("reason")) for e in events
    ]


def test_cancel_amend_close_and_every_symbol_numbering_its_own_events() -> None:
    out, err = play(
        SELL,
        '{"op":"new","orderId":"d1","accountId":"a1","symbol":"vale3","side":"BUY",'
        '"type":"LIMIT","timeInForce":"DAY","quantity":5,"price":"61.20"}',
        '{"op":"amend","orderId":"s1","symbol":"PETR4","quantity":50}',
        '{"op":"cancel","orderId":"s1","symbol":"PETR4","accountId":"a1"}',
        '{"op":"cancel","orderId":"s1","symbol":"PETR4"}',
        '{"op":"close"}',
    )
    assert err == ""
    assert _summary(out) == [
        ("OrderAccepted", "PETR4", 1, "s1", None),
        ("OrderAccepted", "VALE3", 1, "d1", None),
        ("OrderAmended", "PETR4", 2, "s1", None),
        ("OrderCancelled", "PETR4", 3, "s1", "USER"),
        ("OrderRejected", "PETR4", 4, "s1", "UNKNOWN_ORDER"),
        ("OrderExpired", "VALE3", 2, "d1", None),
    ]


def test_exchange_rules_reject_as_events_not_bad_lines() -> None:
    rules = {"PETR4": SymbolRules(lot_size=Decimal("100"), price_band_pct=Decimal("10"))}
    out, err = play(
        SELL.replace('"price":"38.52"', '"price":"38.525"'),
        SELL.replace('"s1"', '"s2"').replace('"quantity":100', '"quantity":150'),
        '{"op":"reference","symbol":"PETR4","price":"30.00"}',
        SELL.replace('"s1"', '"s3"'),
        SELL.replace('"s1"', '"s4"').replace('"price":"38.52"', '"price":"33.00"'),
        '{"op":"amend","orderId":"s4","symbol":"PETR4","price":"33.001"}',
        rules=rules,
    )
    assert err == ""
    assert _summary(out) == [
        ("OrderRejected", "PETR4", 1, "s1", "TICK_SIZE"),
        ("OrderRejected", "PETR4", 2, "s2", "LOT_SIZE"),
        ("OrderRejected", "PETR4", 3, "s3", "PRICE_BAND"),
        ("OrderAccepted", "PETR4", 4, "s4", None),
        ("OrderRejected", "PETR4", 5, "s4", "TICK_SIZE"),
    ]
    assert json.loads(out[0])["detail"] == (
        "PlaceOrder: price 38.525 is not a multiple of the tick size 0.01"
    )


def test_bad_lines_go_to_stderr_with_their_line_number_and_are_skipped() -> None:
    out, err = play(
        "not json",
        SELL.replace('"38.52"', "38.52"),
        "",
        '["a list"]',
        '{"op":"launch"}',
        SELL.replace('"orderId":"s1",', ""),
        SELL.replace('"op":"new",', '"op":"new","colour":"red",'),
        BUY.replace('"type":"LIMIT"', '"type":"MARKET"'),
        BUY.replace('"quantity":"40"', '"quantity":"0"'),
        BUY.replace('"side":"BUY"', '"side":"HOLD"'),
        '{"op":"amend","orderId":"b1","symbol":"PETR4"}',
        '{"op":"new","orderId":"x","accountId":"a","symbol":"BAD SYMBOL","side":"BUY",'
        '"type":"MARKET","quantity":1}',
        SELL.replace("2026-01-02T13:00:00Z", "2026-01-02T13:00:00"),
        BUY,
    )
    assert err.splitlines() == [
        "line 1: not JSON: Expecting value: line 1 column 1 (char 0)",
        "line 2: price: 38.52 is a JSON float, which is inexact; send a decimal string such as "
        '"38.52"',
        "line 4: expected a JSON object",
        "line 5: op: 'launch' is not one of new, cancel, amend, close, reference",
        "line 6: orderId: required string",
        "line 7: unknown field(s) colour for op 'new'",
        "line 8: price: a MARKET order takes no price (send null or leave it out)",
        "line 9: quantity: must be a positive decimal, got '0'",
        "line 10: side: 'HOLD' is not one of BUY, SELL",
        "line 11: quantity: an amend needs a new quantity, a new price, or both",
        "line 12: symbol: 'BAD SYMBOL' is not a symbol (1-32 letters, digits, '.', '-')",
        "line 13: eventTime: '2026-01-02T13:00:00' has no time zone; send UTC, "
        "e.g. '...T13:00:00Z'",
    ]
    # The good line still ran, and numbering started at 1 for it.
    assert _summary(out) == [("OrderAccepted", "PETR4", 1, "b1", None)]


def test_replay_stats_count_what_happened() -> None:
    stats = replay([SELL + "\n", "oops\n", "\n", BUY + "\n"], io.StringIO(), io.StringIO())
    assert (stats.lines, stats.commands, stats.bad_lines, stats.events, stats.trades) == (
        4,
        2,
        1,
        5,
        1,
    )


@pytest.mark.parametrize(
    ("sent", "printed"),
    [
        ("2026-01-02T10:00:00.5-03:00", "2026-01-02T13:00:00.500000Z"),
        ("2026-01-02T13:00:00.250000Z", "2026-01-02T13:00:00.250000Z"),
        ("2026-01-02 13:00:00.250000Z", "2026-01-02T13:00:00.250000Z"),
        ("2026-W01-5T13:00:00.250000Z", "2026-01-02T13:00:00.250000Z"),  # ISO week date
    ],
)
def test_event_times_are_normalised_to_utc_with_microseconds(sent: str, printed: str) -> None:
    out, _ = play(SELL.replace("2026-01-02T13:00:00Z", sent))
    assert json.loads(out[0])["eventTime"] == printed


def test_the_common_path_decodes_exactly_like_the_checked_path() -> None:
    """The cached fast path for PlaceOrder lines must agree with the fully checked one."""
    rng = random.Random(3)
    decoder = TapeDecoder(Exchange({"A": SymbolRules(lot_size=Decimal("10"))}))
    for number in range(2000):
        line = {
            "op": "new",
            "orderId": f" o{number} " if number % 50 == 0 else f"o{number}",
            "accountId": rng.choice(["a", "b "]),
            "symbol": rng.choice(["A", "B", "a"]),
            "side": rng.choice(["BUY", "SELL"]),
            "type": rng.choice(["LIMIT", "LIMIT", "MARKET"]),
            "quantity": rng.choice([10, "20", "25", 30]),
        }
        if rng.random() < 0.2:
            line["timeInForce"] = rng.choice(["IOC", "FOK", "DAY"])
        if line["type"] == "LIMIT":
            line["price"] = rng.choice(["1.00", "1.01", "1.015", "2"])
        if rng.random() < 0.5:
            line["eventTime"] = f"2026-01-02T13:00:{number % 60:02d}.000000Z"
        data = json.loads(json.dumps(line))
        fast = decoder._new_common(data)
        slow = decoder._new(json.loads(json.dumps(line)))
        if fast is not None:
            assert fast == slow
    # The fast path really is the one taken once caches are warm.
    warm = BUY.replace("PETR4", "A").replace("38.60", "1.00").replace('"40"', '"20"')
    assert decoder._new_common(json.loads(warm)) is not None


def test_main_reads_a_file_and_writes_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = tmp_path / "tape.jsonl"
    tape.write_text(f"{SELL}\nbroken\n{BUY}\n", encoding="utf-8")
    assert main([str(tape), "--summary"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert captured.err.splitlines() == [
        "line 2: not JSON: Expecting value: line 1 column 1 (char 0)",
        "brokerflow match: 3 lines, 2 commands, 1 bad lines, 5 events, 1 trades",
    ]


def test_main_reads_stdin_for_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{SELL}\n"))
    assert main(["-"]) == 0
    assert json.loads(capsys.readouterr().out)["orderId"] == "s1"


def test_main_applies_a_rules_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('{"petr4": {"tickSize": "0.05", "lotSize": "100"}}', encoding="utf-8")
    tape = tmp_path / "tape.jsonl"
    tape.write_text(SELL + "\n", encoding="utf-8")
    assert main([str(tape), "--rules", str(rules)]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "TICK_SIZE"


def test_the_cli_passes_options_given_before_the_tape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brokerflow.cli import main as cli_main

    rules = tmp_path / "rules.json"
    rules.write_text('{"petr4": {"tickSize": "0.05", "lotSize": "100"}}', encoding="utf-8")
    tape = tmp_path / "tape.jsonl"
    tape.write_text(SELL + "\n", encoding="utf-8")
    assert cli_main(["match", "--rules", str(rules), "--summary", str(tape)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["reason"] == "TICK_SIZE"
    assert captured.err.startswith("brokerflow match: 1 lines, 1 commands")


def test_main_exit_codes_when_input_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad_rules = tmp_path / "rules.json"
    bad_rules.write_text('{"PETR4": {"tickSize": "-0.05"}}', encoding="utf-8")
    assert main([str(tmp_path / "missing.jsonl"), "--rules", str(bad_rules)]) == 2
    assert "tickSize" in capsys.readouterr().err
    assert main(["--no-such-option"]) == 2


def test_output_is_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    from .support import random_tape

    rng = random.Random(11)
    lines = []
    for command in random_tape(rng, 400, symbol="PETR4"):
        kind = type(command).__name__
        if kind == "NewOrder":
            record = {
                "op": "new",
                "orderId": command.order_id,
                "accountId": command.account_id,
                "symbol": command.symbol,
                "side": command.side,
                "type": command.order_type,
                "timeInForce": command.time_in_force,
                "quantity": command.quantity,
                "price": None if command.price is None else str(Decimal(command.price) / 100),
                "eventTime": command.event_time,
            }
        elif kind == "Cancel":
            record = {"op": "cancel", "orderId": command.order_id, "symbol": "PETR4"}
        else:
            continue
        lines.append(json.dumps(record))
    tape = tmp_path / "tape.jsonl"
    tape.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = []
    for seed in ("1", "2"):
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-m", "brokerflow.matching.replay", str(tape)],
            capture_output=True,
            check=True,
            env=environment,
        )
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") > len(lines)
