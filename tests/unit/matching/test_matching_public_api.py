"""A small, explicit public surface, and a core that imports no I/O library."""

from __future__ import annotations

import subprocess
import sys

import brokerflow.matching as matching


def test_all_is_exactly_the_public_surface() -> None:
    assert sorted(matching.__all__) == sorted(
        [
            "DEFAULT_RULES",
            "EPOCH_TIME",
            "Amend",
            "Cancel",
            "CloseSession",
            "Command",
            "Depth",
            "EngineState",
            "Event",
            "Exchange",
            "MatchingEngine",
            "NewOrder",
            "PriceLevel",
            "Reason",
            "Reject",
            "RestingOrder",
            "SelfTradePrevention",
            "SetReferencePrice",
            "SymbolRules",
            "TopOfBook",
            "amend_command",
            "event_account_id",
            "event_order_id",
            "event_sequence",
            "event_type",
            "format_event_time",
            "place_command",
            "to_json",
            "to_json_lines",
            "to_wire",
        ]
    )
    for name in matching.__all__:
        assert getattr(matching, name) is not None


def test_the_core_imports_no_io_or_validation_library() -> None:
    probe = (
        "import sys, brokerflow.matching, brokerflow.matching.replay;"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'faust', 'aiokafka', 'pydantic', 'redis', 'pymongo', 'rocksdict', 'httpx'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
