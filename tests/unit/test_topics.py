"""The catalog is the one place topics are defined: every message has a home, names are unique."""

from __future__ import annotations

from brokerflow.schemas import REGISTRY
from brokerflow.settings import Settings
from brokerflow.topics import RETAIN_FOREVER, catalog

SETTINGS = Settings(_env_file=None)


def test_every_value_type_is_a_registered_message() -> None:
    registered = {type_name for type_name, _version in REGISTRY}
    for spec in catalog(SETTINGS):
        unknown = set(spec.value_types) - registered
        assert not unknown, f"{spec.name} names unregistered types {unknown}"


def test_every_registered_message_has_a_topic() -> None:
    carried = {kind for spec in catalog(SETTINGS) for kind in spec.value_types}
    homeless = {type_name for type_name, _version in REGISTRY} - carried
    assert not homeless, f"no topic carries {homeless}"


def test_names_are_unique_and_seed_names_are_kept() -> None:
    topics = catalog(SETTINGS)
    names = [spec.name for spec in topics]
    assert len(names) == len(set(names))
    assert topics.market_trades.name == "market.trades.raw"
    assert topics.market_book_ticker.name == "market.book_ticker.raw"
    assert topics.market_quotes.name == "assets-market-data-v1"
    assert topics.order_events.name == "order-events-v1"


def test_audit_topics_are_kept_forever() -> None:
    topics = catalog(SETTINGS)
    for spec in (topics.order_commands, topics.order_events, topics.trade_executions):
        assert spec.configs()["retention.ms"] == str(RETAIN_FOREVER)


def test_exchange_topics_are_co_partitioned_by_symbol() -> None:
    topics = catalog(SETTINGS)
    exchange = [topics.order_commands, topics.order_events, topics.trade_executions]
    assert {spec.key for spec in exchange} == {"symbol"}
    assert len({spec.partitions for spec in exchange}) == 1


def test_prefix_and_overrides_apply() -> None:
    settings = Settings(_env_file=None, topic_prefix="dev.", market_trades_topic="t.raw")
    topics = catalog(settings)
    assert topics.market_trades.name == "dev.t.raw"
    assert topics.by_name("dev.order-events-v1") is topics.order_events
    assert topics.by_name("order_events") is topics.order_events
