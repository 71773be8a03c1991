"""Every Prometheus metric brokerflow exports, in one place.

The names keep the seed's dashboards working (``vendor_fetch_success_total``,
``vendor_fetch_failure_total``, ``kafka_publish_success_total``); the rest follow the same plain
``<what>_<unit>_total`` style. All live in :data:`REGISTRY`, a registry of our own rather than
prometheus-client's global one, so that a library we import (Faust, Bytewax) cannot collide with a
name and tests read exact values with :func:`metric_value`::

    >>> before = metric_value("dead_letters_total", source="binance_ws", reason="DOCTEST")
    >>> DEAD_LETTERS.labels(source="binance_ws", reason="DOCTEST").inc()
    >>> metric_value("dead_letters_total", source="binance_ws", reason="DOCTEST") - before
    1.0

Label values stay low-cardinality: a vendor (``binance``, ``brapi``), a topic, a shard number, a
short reason code; never a symbol or an order id.
"""

from __future__ import annotations

import logging
from threading import Lock, Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

__all__ = [
    "ACCOUNT_DECISIONS",
    "ALERTS_ACTIVE",
    "ALERTS_TRIGGERED",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "EXCHANGE_EVENTS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "KAFKA_PUBLISH_FAILURE",
    "KAFKA_PUBLISH_SUCCESS",
    "LEDGER_ENTRIES",
    "NOTIFICATIONS_DELIVERED",
    "NOTIFICATIONS_GIVEN_UP",
    "NOTIFICATIONS_PUBLISHED",
    "NOTIFICATIONS_PUSHED",
    "NOTIFICATIONS_RETRIED",
    "NOTIFICATIONS_WITHOUT_POSITION",
    "ORDER_ANSWERS",
    "PARTICIPANT_COMMANDS",
    "PARTICIPANT_INVENTORY",
    "PROJECTOR_BATCH_SECONDS",
    "PROJECTOR_EVENTS",
    "PROJECTOR_GAPS_HELD",
    "RECONCILER_ACCOUNTS",
    "RECONCILER_DISCREPANCIES",
    "RECONCILER_DISCREPANCY_COUNT",
    "RECONCILER_LAST_PASS",
    "RECONCILER_QUEUED",
    "RECONCILER_REPUBLISHED",
    "RECONCILER_SETTLEMENTS_REQUESTED",
    "REGISTRY",
    "VENDOR_FETCH_FAILURE",
    "VENDOR_FETCH_SUCCESS",
    "VENDOR_RECONNECTS",
    "VENDOR_TO_KAFKA_LATENCY",
    "WEBSOCKET_CONNECTIONS",
    "WINDOW_LATENESS",
    "WINDOW_LATE_EVENTS_DROPPED",
    "metric_value",
    "serve_metrics",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
# The process, platform and GC collectors the default registry would have had.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# --- vendors ----------------------------------------------------------------------------------
VENDOR_FETCH_SUCCESS = Counter(
    "vendor_fetch_success",
    "Payloads received from a market-data vendor: one per WebSocket frame, one per HTTP 200",
    ["vendor"],
    registry=REGISTRY,
)
VENDOR_FETCH_FAILURE = Counter(
    "vendor_fetch_failure",
    "Failed vendor fetches: a connection that could not open or dropped, an HTTP error status",
    ["vendor", "reason"],
    registry=REGISTRY,
)
VENDOR_RECONNECTS = Counter(
    "vendor_reconnects",
    "WebSocket reconnections, by shard and why (server_shutdown, max_age, silence, "
    "connection_closed, connect_failed)",
    ["vendor", "shard", "reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "dead_letters",
    "Records refused and dead-lettered, by who refused them and the reason code",
    ["source", "reason"],
    registry=REGISTRY,
)

# --- Kafka ------------------------------------------------------------------------------------
KAFKA_PUBLISH_SUCCESS = Counter(
    "kafka_publish_success",
    "Records acknowledged by Kafka",
    ["topic"],
    registry=REGISTRY,
)
KAFKA_PUBLISH_FAILURE = Counter(
    "kafka_publish_failure",
    "Records Kafka refused or that timed out",
    ["topic"],
    registry=REGISTRY,
)
VENDOR_TO_KAFKA_LATENCY = Histogram(
    "vendor_to_kafka_latency_seconds",
    "From the vendor's event time to Kafka's acknowledgement of our record",
    ["vendor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)

# --- windows (stats flow) ---------------------------------------------------------------------
WINDOW_LATENESS = Histogram(
    "window_lateness_seconds",
    "How far behind the watermark an event arrived (0 for an on-time event)",
    ["flow"],
    buckets=(0, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
WINDOW_LATE_EVENTS_DROPPED = Counter(
    "window_late_events_dropped",
    "Events that arrived after their window had closed and were left out of it",
    ["flow"],
    registry=REGISTRY,
)

# --- price alerts and the reconciler (broker read side) ----------------------------------------
ALERTS_TRIGGERED = Counter(
    "alerts_triggered",
    "Price alerts fired: the notification sent and the alert marked TRIGGERED (outcome won), "
    "or sent while another instance or an earlier run marked it first (outcome lost_race)",
    ["outcome"],
    registry=REGISTRY,
)
ALERTS_ACTIVE = Gauge(
    "alerts_active",
    "Active price alerts this alerts-service process watches",
    registry=REGISTRY,
)
RECONCILER_REPUBLISHED = Counter(
    "reconciler_republished",
    "Requests of stuck orders published again (RequestOrder for PENDING, RequestCancel for a "
    "pending cancel)",
    ["command"],
    registry=REGISTRY,
)
NOTIFICATIONS_PUBLISHED = Counter(
    "notifications_published",
    "Order events turned into notifications on notifications-v1, by order event type; "
    "'unknown_order' counts events of orders without an API document (not a user's)",
    ["event"],
    registry=REGISTRY,
)
NOTIFICATIONS_DELIVERED = Counter(
    "notifications_delivered",
    "Notifications stored and published to their user's channel ('new'), or dropped as a "
    "repeat of one delivered already ('repeat')",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_PUSHED = Counter(
    "notifications_pushed",
    "Pushes to users with no open WebSocket, by channel and outcome ('sent', 'refused'), "
    "first tries and retries alike",
    ["channel", "outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_WITHOUT_POSITION = Counter(
    "notifications_without_position",
    "Fill notifications sent with positionQty null: the accounts agent had not settled the fill "
    "by the time it was NOTIFY_POSITION_WAIT_MS old",
    registry=REGISTRY,
)
NOTIFICATIONS_RETRIED = Counter(
    "notifications_push_retries",
    "Retries of refused pushes by the retry job, by outcome ('sent', 'refused')",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_GIVEN_UP = Counter(
    "notifications_given_up",
    "Notifications the push channel never took (retries used up, or a refusal no retry mends), "
    "sent to dead-letters-v1; by the channel's last reason",
    ["reason"],
    registry=REGISTRY,
)
PARTICIPANT_COMMANDS = Counter(
    "participant_commands",
    "Commands the simulated participants sent to order-commands-v1, by role (maker, taker, "
    "restart: cancels of a previous run's orders) and command type",
    ["role", "command"],
    registry=REGISTRY,
)
PARTICIPANT_INVENTORY = Gauge(
    "participant_inventory",
    "A simulated market maker's position, by symbol (negative: short)",
    ["symbol"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "consumer_group_lag",
    "Records each consumer group of the namespace has yet to read, summed over its partitions "
    "(measured by the dashboard every 2 s)",
    ["group"],
    registry=REGISTRY,
)
WEBSOCKET_CONNECTIONS = Gauge(
    "websocket_connections",
    "Open /ws/v1/orders connections in this API process",
    registry=REGISTRY,
)
RECONCILER_QUEUED = Gauge(
    "reconciler_queued",
    "Stuck-looking requests the last orders pass left alone because the accounts agent had not "
    "yet read their partition to the end (a backlog, not a loss)",
    registry=REGISTRY,
)
RECONCILER_SETTLEMENTS_REQUESTED = Counter(
    "reconciler_settlements_requested",
    "SettleDue requests sent by the daily settlement sweep (one per account with unsettled "
    "proceeds per Sao Paulo date)",
    registry=REGISTRY,
)
RECONCILER_DISCREPANCIES = Gauge(
    "reconciler_discrepancies",
    "Discrepancies found by the last balance pass, by where (read_model, agent) and what field "
    "(cash, held, unsettled, shares_held, position_quantity, average_price, realized_pnl, "
    "missing_document); the log names the account",
    ["source", "field"],
    registry=REGISTRY,
)
RECONCILER_DISCREPANCY_COUNT = Gauge(
    "reconciler_discrepancy_count",
    "All discrepancies found by the last balance pass",
    registry=REGISTRY,
)
RECONCILER_ACCOUNTS = Gauge(
    "reconciler_accounts",
    "Accounts of the last balance pass, by source and outcome: compared, behind (the copy is "
    "older than the ledger: compared at its own sequence), ahead (moved on since the pass "
    "started: skipped), recent (no copy yet, within RECONCILER_GRACE_S), missing (no copy)",
    ["source", "outcome"],
    registry=REGISTRY,
)
RECONCILER_LAST_PASS = Gauge(
    "reconciler_last_pass_timestamp_seconds",
    "When the last balance pass finished (Unix time)",
    registry=REGISTRY,
)


# --- exchange and accounts (the Faust worker) ---------------------------------------------------
# Counted when a record is processed: a transaction that aborts and is processed again after a
# restart counts twice here, never on the topics.
EXCHANGE_EVENTS = Counter(
    "exchange_events",
    "Order events and trades the matching agent emitted, by type (OrderAccepted, TradeExecuted...)",
    ["type"],
    registry=REGISTRY,
)
ACCOUNT_DECISIONS = Counter(
    "account_decisions",
    "The accounts agent's answers to requests: outcome ACCEPTED or the refusal's code",
    ["command", "outcome"],
    registry=REGISTRY,
)
LEDGER_ENTRIES = Counter(
    "ledger_entries",
    "Ledger entries the accounts agent wrote, by type (FundsHeld, FillSettled...)",
    ["type"],
    registry=REGISTRY,
)

# --- broker API -------------------------------------------------------------------------------
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "From a request's arrival to the start of its answer, by method and route template",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ORDER_ANSWERS = Counter(
    "api_order_answers",
    "Answers to POST /api/v1/orders: ACCEPTED, PENDING (no decision in time), a refusal's "
    "code, or REPLAYED (an idempotency key's stored answer)",
    ["outcome"],
    registry=REGISTRY,
)

# --- read-model projector ---------------------------------------------------------------------
PROJECTOR_EVENTS = Counter(
    "projector_events",
    "Records the projector read, by what became of them: applied, duplicate (already applied), "
    "ignored (nothing to project), dead_letter",
    ["outcome"],
    registry=REGISTRY,
)
PROJECTOR_BATCH_SECONDS = Histogram(
    "projector_batch_duration_seconds",
    "Time to fold and write one batch of records into MongoDB (and the portfolio cache)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROJECTOR_GAPS_HELD = Gauge(
    "projector_gaps_held",
    "Ledger entries held back because an earlier entry of their account has not arrived",
    registry=REGISTRY,
)


def metric_value(name: str, **labels: str) -> float:
    """The current value of one sample, 0.0 when it was never touched (for tests and checks).

    ``name`` is the exposed sample name: ``vendor_fetch_success_total``,
    ``vendor_to_kafka_latency_seconds_count``...
    """
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def start_metrics_server(port: int, address: str = "0.0.0.0") -> tuple[WSGIServer, Thread]:
    """Serve :data:`REGISTRY` on ``http://address:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port: read it back from ``server.server_port``. To stop, call
    ``server.shutdown()`` then ``server.server_close()``.
    """
    return start_http_server(port, addr=address, registry=REGISTRY)


_serving_lock = Lock()
_serving: WSGIServer | None = None


def serve_metrics(port: int) -> int | None:
    """Serve the metrics once per process (a flow's workers all call this); the port, or ``None``.

    ``0`` serves nothing. A port already taken (another flow on the same machine, say) is logged,
    not fatal: the flow's work matters more than its metrics.
    """
    global _serving
    with _serving_lock:
        if _serving is None and port:
            try:
                _serving, _ = start_metrics_server(port)
            except OSError as exc:
                log.warning("metrics: cannot listen on port %d (%s); not serving", port, exc)
        return None if _serving is None else int(_serving.server_port)
