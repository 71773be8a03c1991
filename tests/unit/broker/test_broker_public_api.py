"""The broker core's public surface, and a core that imports no I/O library."""

from __future__ import annotations

import subprocess
import sys

import brokerflow.broker as broker


def test_all_is_exactly_the_public_surface() -> None:
    assert sorted(broker.__all__) == sorted(
        [
            "AVERAGE_PRICE_DECIMALS",
            "B3_TIMEZONE",
            "AccountState",
            "Balance",
            "BrokerRules",
            "Cash",
            "FeeRates",
            "OpenOrder",
            "Outcome",
            "PendingAmend",
            "PendingSettlement",
            "Position",
            "Posting",
            "Refusal",
            "RefusalCode",
            "add_business_days",
            "apply_report",
            "b3_holidays",
            "balances",
            "buy_hold",
            "check_order",
            "customer_book",
            "decide",
            "easter_sunday",
            "fee",
            "is_business_day",
            "postings",
            "session_open",
            "settlement_date",
        ]
    )
    for name in broker.__all__:
        assert getattr(broker, name) is not None


def test_the_core_imports_no_io_library() -> None:
    probe = (
        "import sys, brokerflow.broker, brokerflow.instruments;"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'faust', 'aiokafka', 'redis', 'pymongo', 'httpx', 'fastapi', 'pydantic_settings'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
