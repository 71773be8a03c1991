from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from brokerflow.settings import Settings, render_env_example

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_its_default() -> None:
    assert (ROOT / ".env.example").read_text() == render_env_example(), (
        ".env.example is stale: run `python -m brokerflow.settings > .env.example`"
    )


def test_seed_environment_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BROKER", "kafka:9092")
    monkeypatch.setenv("BINANCE_SYMBOLS", "btcusdt, ethusdt,,SOLUSDT")
    monkeypatch.setenv("KAFKA_LINGER_MS", "0")
    monkeypatch.setenv("KAFKA_COMPRESSION", "zstd")
    monkeypatch.setenv("WS_SHARD_SIZE", "1024")
    monkeypatch.setenv("VALIDATE_ONLY", "true")
    monkeypatch.setenv("MARKET_TRADES_TOPIC", "custom.trades")

    settings = Settings(_env_file=None)

    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.binance_symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert settings.kafka_linger_ms == 0
    assert settings.kafka_compression == "zstd"
    assert settings.ws_shard_size == 1024
    assert settings.validate_only is True
    assert settings.market_trades_topic == "custom.trades"


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL=redis://10.1.2.3:6380/2\nTOPIC_PREFIX=dev.\n")
    settings = Settings(_env_file=env_file)
    assert settings.redis_url == "redis://10.1.2.3:6380/2"
    assert settings.topic("order-events-v1") == "dev.order-events-v1"


@pytest.mark.parametrize(
    ("name", "value"),
    [("WS_SHARD_SIZE", "1025"), ("KAFKA_ACKS", "2"), ("KAFKA_COMPRESSION", "brotli")],
)
def test_out_of_range_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert name.lower() in str(raised.value)
