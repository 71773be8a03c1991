"""The Faust app of the exchange and the broker's accounts: ``faust -A brokerflow.app worker``.

Run several workers to share the command topic's partitions; each claims its own data dir and web
port (slot N of ``EXCHANGE_DATA_DIR``, port ``EXCHANGE_WEB_PORT_BASE + N``) with a file lock, so
they can start from one shell with no flags. Settings come from the environment (``.env``), like
every brokerflow process.

Reading guide: :mod:`brokerflow.tables.exchange` (the RocksDB tables),
:mod:`brokerflow.agents.match_orders` (the matching agent, with the exactly-once design, and
:mod:`brokerflow.agents.exactly_once`, the machinery every stateful agent shares),
:mod:`brokerflow.agents.accounts` (the broker's accounts: holds, settlement, ledger; its table in
:mod:`brokerflow.tables.accounts`),
:mod:`brokerflow.agents.forward_reference_prices` (market prices it turns into reference-price
commands) and :mod:`brokerflow.agents.close_sessions` (the session-close timer).

Faust settings that carry a design decision:

* ``processing_guarantee="exactly_once"``: per-partition transactional producers; the worker's
  consumer reads ``read_committed``.
* ``broker_commit_every`` off and ``broker_commit_interval`` from settings: commits happen on the
  timer only, and :mod:`brokerflow.agents.match_orders` makes each commit wait for a quiescent
  point (see there).
* ``table_standby_replicas=0``: standbys write RocksDB as well; recovery from the changelog is
  what the clean-shutdown rule relies on, and it is fast enough at this scale.
* ``recovery_consistency_check=False``: Faust compares a table's persisted changelog offset with
  a high-water mark its consumer cached from the last fetch, which under exactly-once can trail
  the real end and crash a healthy worker with ``ConsistencyError`` after a rebalance. The
  matching agent restores its partitions from the changelogs itself (read to the end the broker
  reports) and records that end as the persisted offset.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

import faust

from brokerflow.exchange.datadir import Slot, claim_slot, mark_clean_shutdown, prepare_slot_dir
from brokerflow.metrics import serve_metrics
from brokerflow.settings import Settings, get_settings

__all__ = ["app", "create_app", "settings", "slot"]

log = logging.getLogger(__name__)

settings: Settings = get_settings()
#: The data-dir slot this process holds; claimed when Faust configures the app (not at import).
slot: Slot | None = None


def _brokers(servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in servers.split(",") if server.strip()]


def create_app(settings: Settings) -> faust.App:
    """The app object; no I/O until Faust configures it (then the slot is claimed)."""
    app = faust.App(
        settings.exchange_app_id,
        broker=_brokers(settings.kafka_bootstrap_servers),
        store="rocksdb://",
        processing_guarantee="exactly_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_commit_interval=settings.exchange_commit_interval_s,
        broker_commit_every=None,
        # The agents hand the producers a step's records per partition as one batch
        # (agents.exactly_once.Outbox); 16 KiB batches split them into many requests.
        producer_max_batch_size=512 * 1024,
        broker_session_timeout=settings.exchange_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.exchange_session_timeout_s / 3),
        table_standby_replicas=0,
        recovery_consistency_check=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        origin="brokerflow",
        web_host="127.0.0.1",
    )

    @app.on_configured.connect
    def _claim_data_dir(app: faust.App, conf: Any, **kwargs: Any) -> None:
        global slot
        if slot is None:
            slot = claim_slot(
                (
                    Path(settings.exchange_data_dir)
                    if settings.exchange_data_dir
                    else settings.stack_dir / "exchange"
                ).absolute(),
                settings.exchange_worker_slots,
            )
            if prepare_slot_dir(slot):
                log.warning(
                    "slot %d had no clean-shutdown marker: wiped its RocksDB store, the tables "
                    "will be rebuilt from their changelogs",
                    slot.number,
                )
            atexit.register(_mark_clean_if_not_crashed, app, slot)
        conf.datadir = slot.path
        conf.web_port = settings.exchange_web_port_base + slot.number
        conf.canonical_url = f"http://{conf.web_host}:{conf.web_port}"

    return app


def _mark_clean_if_not_crashed(app: faust.App, slot: Slot) -> None:
    """At interpreter exit after a graceful stop: the store matches the committed changelog."""
    if getattr(app, "crash_reason", None) is None and getattr(app, "_crash_reason", None) is None:
        mark_clean_shutdown(slot)


app = create_app(settings)


@app.task
async def serve_worker_metrics() -> None:
    """The worker's Prometheus metrics on ``METRICS_PORT`` (``brokerflow run`` gives each
    service its own), beside Faust's web server."""
    port = serve_metrics(settings.metrics_port)
    if port is not None:
        log.info("metrics on http://127.0.0.1:%d/metrics", port)


# Importing these registers the tables, agents and timer on ``app`` (they import it from here).
import brokerflow.agents.accounts  # noqa: E402
import brokerflow.agents.close_sessions  # noqa: E402
import brokerflow.agents.match_orders  # noqa: E402
import brokerflow.tables.accounts  # noqa: E402
import brokerflow.tables.exchange  # noqa: E402, F401
