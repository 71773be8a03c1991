"""The topic catalog: every Kafka topic brokerflow reads or writes, in one place.

Names come from the seeds where they give one (``market.trades.raw``, ``market.book_ticker.raw``,
``assets-market-data-v1``, ``order-events-v1``); our own follow seed 001's pattern
``<noun>-<noun>-v<N>``. Every keyed topic is keyed by symbol (or account), so one partition sees one
symbol's events in order. :func:`ensure_topics` creates the catalog idempotently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from brokerflow.settings import Settings

__all__ = [
    "RETAIN_FOREVER",
    "TopicCatalog",
    "TopicSpec",
    "catalog",
    "delete_topics",
    "ensure_topics",
    "reset_topics",
]

log = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
RETAIN_FOREVER = -1


@dataclass(frozen=True, slots=True)
class TopicSpec:
    #: Logical name: the attribute used in code (``catalog.order_events``).
    logical: str
    #: Physical topic name on the broker (after settings overrides and prefix).
    name: str
    partitions: int
    #: What the message key holds; every key is a UTF-8 string.
    key: Literal["symbol", "accountId", "userId", "source"]
    #: Registry ``type`` names of the payloads this topic carries.
    value_types: tuple[str, ...]
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = 7 * DAY_MS
    description: str = ""
    extra_config: tuple[tuple[str, str], ...] = field(default=())

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        configs.update(dict(self.extra_config))
        return configs


@dataclass(frozen=True, slots=True)
class TopicCatalog:
    market_trades: TopicSpec
    market_book_ticker: TopicSpec
    market_quotes: TopicSpec
    market_bars: TopicSpec
    market_late_ticks: TopicSpec
    order_commands: TopicSpec
    order_events: TopicSpec
    trade_executions: TopicSpec
    exchange_book: TopicSpec
    ledger_events: TopicSpec
    account_commands: TopicSpec
    account_events: TopicSpec
    execution_reports: TopicSpec
    notifications: TopicSpec
    notifications_undelivered: TopicSpec
    dead_letters: TopicSpec
    alert_commands: TopicSpec

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(getattr(self, name) for name in self.__dataclass_fields__)

    def by_name(self, name: str) -> TopicSpec:
        for spec in self:
            if spec.name == name or spec.logical == name:
                return spec
        known = ", ".join(spec.name for spec in self)
        raise KeyError(f"no topic {name!r} in the catalog; known topics: {known}")


def catalog(settings: Settings) -> TopicCatalog:
    """Build the catalog for these settings (topic names and partitions are configurable)."""
    n = settings.topic_partitions

    def spec(logical: str, name: str, **kwargs: object) -> TopicSpec:
        return TopicSpec(logical=logical, name=settings.topic(name), **kwargs)  # type: ignore[arg-type]

    return TopicCatalog(
        market_trades=spec(
            "market_trades",
            settings.market_trades_topic,
            partitions=n,
            key="symbol",
            value_types=("Trade",),
            description="Normalized trade ticks from every venue (Binance trades), keyed by symbol",
        ),
        market_book_ticker=spec(
            "market_book_ticker",
            settings.market_book_topic,
            partitions=n,
            key="symbol",
            value_types=("BestBidAsk",),
            retention_ms=2 * DAY_MS,
            description="Normalized best bid/ask updates (Binance bookTicker), keyed by symbol",
        ),
        market_quotes=spec(
            "market_quotes",
            settings.market_quotes_topic,
            partitions=n,
            key="symbol",
            value_types=("Quote",),
            retention_ms=30 * DAY_MS,
            description="Normalized B3 quotes polled from Brapi, keyed by asset",
        ),
        market_bars=spec(
            "market_bars",
            "market-bars-v1",
            partitions=n,
            key="symbol",
            value_types=("BarClosed",),
            retention_ms=30 * DAY_MS,
            description="Closed 1 s and 1 min windows per symbol: OHLCV, VWAP, spread",
        ),
        market_late_ticks=spec(
            "market_late_ticks",
            "market-late-ticks-v1",
            partitions=n,
            key="symbol",
            value_types=("Trade", "BestBidAsk", "TradeExecuted"),
            retention_ms=7 * DAY_MS,
            description="Ticks (and exchange trades) that arrived after their window closed; "
            "never change a closed bar",
        ),
        order_commands=spec(
            "order_commands",
            "order-commands-v1",
            partitions=n,
            key="symbol",
            value_types=(
                "PlaceOrder",
                "CancelOrder",
                "AmendOrder",
                "CloseSession",
                "SetReferencePrice",
            ),
            retention_ms=RETAIN_FOREVER,
            description="Broker -> exchange order commands, keyed by symbol (one book a partition)",
        ),
        order_events=spec(
            "order_events",
            settings.order_events_topic,
            partitions=n,
            key="symbol",
            value_types=(
                "OrderSubmitted",
                "OrderAccepted",
                "OrderRejected",
                "OrderPartiallyFilled",
                "OrderFilled",
                "OrderCancelled",
                "OrderExpired",
                "OrderAmended",
                "OrderDuplicateIgnored",
            ),
            retention_ms=RETAIN_FOREVER,
            description="Order lifecycle events along the state machine; the audit trail",
        ),
        trade_executions=spec(
            "trade_executions",
            "trade-executions-v1",
            partitions=n,
            key="symbol",
            value_types=("TradeExecuted",),
            retention_ms=RETAIN_FOREVER,
            description="Trades printed by the matching engine, keyed by symbol",
        ),
        exchange_book=spec(
            "exchange_book",
            "exchange-book-v1",
            partitions=n,
            key="symbol",
            value_types=("BookSnapshot", "BookUpdate"),
            retention_ms=2 * DAY_MS,
            description="The exchange's book: top-N snapshots and increments with a sequence "
            "per symbol, and the best bid/ask (L1)",
        ),
        ledger_events=spec(
            "ledger_events",
            "ledger-events-v1",
            partitions=n,
            key="accountId",
            value_types=(
                "AccountOpened",
                "CashDeposited",
                "CashWithdrawn",
                "FundsHeld",
                "FundsReleased",
                "CustodyTransferredIn",
                "CashSettled",
                "SharesHeld",
                "SharesReleased",
                "FillSettled",
            ),
            retention_ms=RETAIN_FOREVER,
            description="Account cash, holds and settled fills, keyed by account",
        ),
        account_commands=spec(
            "account_commands",
            "account-commands-v1",
            partitions=n,
            key="accountId",
            value_types=(
                "OpenAccount",
                "DepositCash",
                "WithdrawCash",
                "TransferCustody",
                "RequestOrder",
                "RequestCancel",
                "RequestAmend",
                "SettleDue",
            ),
            retention_ms=RETAIN_FOREVER,
            description="API -> accounts agent requests, keyed by account (decided in log order)",
        ),
        account_events=spec(
            "account_events",
            "account-events-v1",
            partitions=n,
            key="accountId",
            value_types=("RequestAccepted", "RequestRefused", "CancelRequestRejected"),
            retention_ms=RETAIN_FOREVER,
            description="The accounts agent's decision on each request, keyed by account",
        ),
        execution_reports=spec(
            "execution_reports",
            "execution-reports-v1",
            partitions=n,
            key="accountId",
            value_types=(
                "OrderAccepted",
                "OrderRejected",
                "OrderPartiallyFilled",
                "OrderFilled",
                "OrderCancelled",
                "OrderExpired",
                "OrderAmended",
                "TradeExecuted",
            ),
            retention_ms=RETAIN_FOREVER,
            description="Exchange -> broker: each order event and trade of an account's orders, "
            "re-keyed by account (a trade reaches both sides)",
        ),
        notifications=spec(
            "notifications",
            "notifications-v1",
            partitions=n,
            key="userId",
            value_types=("OrderUpdate", "PriceAlertTriggered"),
            retention_ms=7 * DAY_MS,
            description="User notifications (order updates, price alerts), keyed by user",
        ),
        notifications_undelivered=spec(
            "notifications_undelivered",
            "notifications-dlq-v1",
            partitions=n,
            key="userId",
            value_types=("NotificationUndelivered",),
            retention_ms=7 * DAY_MS,
            description="Notifications the push channel refused, each with its reason, waiting "
            "for the retry job (1, 2, 4, 8 s); what it gives up on goes to dead-letters-v1",
        ),
        dead_letters=spec(
            "dead_letters",
            "dead-letters-v1",
            partitions=1,
            key="source",
            value_types=("DeadLetter",),
            retention_ms=30 * DAY_MS,
            description="Input that could not be processed, with the reason; keyed by source",
        ),
        alert_commands=spec(
            "alert_commands",
            "alert-commands-v1",
            partitions=n,
            key="symbol",
            value_types=("AlertCreated", "AlertCancelled"),
            retention_ms=RETAIN_FOREVER,
            description="API -> alerts service: price alerts set and cancelled, keyed by symbol "
            "(co-partitioned with the market trades they are compared with)",
        ),
    )


async def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Existing topics are left alone. A topic with fewer partitions than the catalog says is
    reported, not altered: adding partitions moves keys to other partitions and breaks the
    per-symbol ordering that the exchange relies on.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = list(specs if specs is not None else catalog(settings))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=settings.topic_replication_factor,
                        topic_configs=spec.configs(),
                    )
                    for spec in missing
                ]
            )
        present = [spec for spec in wanted if spec.name in existing]
        if present:
            described = await admin.describe_topics([spec.name for spec in present])
            by_name = {entry["topic"]: entry for entry in described}
            for spec in present:
                partitions = len(by_name.get(spec.name, {}).get("partitions", []))
                if partitions != spec.partitions:
                    log.warning(
                        "topic %s has %d partitions, the catalog says %d; left as it is",
                        spec.name,
                        partitions,
                        spec.partitions,
                    )
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def delete_topics(
    settings: Settings, doomed: Callable[[str], bool], *, wait_s: float = 0.0
) -> list[str]:
    """Delete every topic whose name ``doomed`` accepts; wait up to ``wait_s`` for the controller
    to finish. Returns the names."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if doomed(name)]
        if names:
            await admin.delete_topics(names)
        deadline = time.monotonic() + wait_s
        # Deletion completes in the controller; only polling the topic list shows when it has.
        while names and time.monotonic() < deadline:
            if not set(names) & set(await admin.list_topics()):
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return names


async def reset_topics(
    settings: Settings, prefixes: tuple[str, ...], timeout_s: float = 30.0
) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes``, then create the catalog.

    For throwaway namespaces (the demo's): the broker drops a consumer group's offsets of a
    deleted topic with it, so consumers start again from the beginning. Returns the deleted names.
    """
    from aiokafka.errors import KafkaError

    doomed = await delete_topics(settings, lambda name: name.startswith(prefixes), wait_s=timeout_s)
    for attempt in range(20):  # a just-deleted topic can linger in the controller for a moment
        try:
            await ensure_topics(settings, timeout_s=timeout_s)
            return doomed
        except KafkaError:  # TopicAlreadyExists while the deletion completes
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
    return doomed
