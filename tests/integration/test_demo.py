"""The README's main job runs end to end on the stack and reports success only when it worked."""

from __future__ import annotations

import pytest

from brokerflow.demo import _latest_bars, demo_settings, run_demo
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings


@pytest.mark.slow
def test_demo_reads_every_message_back_and_leaves_bars_for_each_tape_symbol(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo(settings, bring_up=False) == 0

    out = capsys.readouterr().out
    assert f"{len(EXAMPLES)} of {len(EXAMPLES)} messages read back" in out
    latest = _latest_bars(demo_settings(settings), "1m")
    # The sample tape's Binance symbols (src/brokerflow/tapegen.py): one latest bar each.
    assert sorted(bar["symbol"] for bar in latest) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    # The exchange part: the Faust worker's trades equal the replay of the same tape.
    assert "record for record, identical to `brokerflow match` on the same tape" in out
    # Market trades of the sample tape became reference prices exactly as the rules predict.
    assert "as the pure forwarding rules predict for the same trades" in out
    assert "NOT as the pure forwarding rules predict" not in out
