"""The package's public surface is deliberate (httpx keeps the same test)."""

from __future__ import annotations

import brokerflow.connectors as connectors


def test_all_is_the_curated_public_api() -> None:
    assert set(connectors.__all__) == {
        "VENDORS",
        "Backoff",
        "BinanceStream",
        "BrapiAuthError",
        "BrapiBudgetExhaustedError",
        "BrapiError",
        "BrapiPlanLimitError",
        "BrapiPoller",
        "BrapiRateLimitedError",
        "BrapiUnavailableError",
        "BrapiUnknownTickerError",
        "ControlEvent",
        "DeadLetterReason",
        "Frame",
        "MarketRecord",
        "ParseResult",
        "RateLimiter",
        "RequestBudget",
        "TapeError",
        "TapePlayer",
        "TapeRecorder",
        "TradingSession",
        "parse_binance_frame",
        "parse_brapi_body",
        "parse_frame",
        "read_tape",
        "sample_tape_path",
    }
    assert all(hasattr(connectors, name) for name in connectors.__all__)


def test_every_vendor_error_is_a_brokerflow_error() -> None:
    from brokerflow.errors import BrokerflowError

    for name in connectors.__all__:
        if name.startswith("Brapi") and name.endswith("Error"):
            assert issubclass(getattr(connectors, name), BrokerflowError), name
    assert issubclass(connectors.TapeError, BrokerflowError)


def test_docstring_examples_run() -> None:
    import doctest

    from brokerflow import metrics
    from brokerflow.connectors import _backoff, _parse, binance_ws, brapi

    for module in (metrics, _backoff, _parse, binance_ws, brapi):
        outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert outcome.failed == 0, module.__name__
        assert outcome.attempted > 0, module.__name__
