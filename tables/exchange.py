"""The exchange's RocksDB-backed Faust tables: books persisted per order, never whole.

Both tables are keyed so that they are co-partitioned with ``order-commands-v1`` (a table write
goes to the changelog partition of the command being processed, which is the symbol's
partition), and both hold raw bytes encoded by :mod:`brokerflow.exchange.state`:

* :data:`orders_by_key`: ``b"SYMBOL|orderId"`` -> a resting order's record, or the closed marker
  (seen, no longer resting: the duplicate-check memory).
* :data:`engine_state_by_symbol`: ``b"SYMBOL"`` -> engine counters, reference price and the last
  session date closed.
* :data:`reference_forwarding`: ``b"TOPIC|SYMBOL"`` -> the market price last forwarded as a
  ``SetReferencePrice`` and the one held back by the interval
  (:class:`~brokerflow.exchange.schedule.ReferenceState`), and ``b"#next-offset|TOPIC"`` -> the
  next market record to read in that partition. The market-data topics are co-partitioned with
  the command topic, so this table's partition is the same symbols' command partition.

RocksDB options: Faust's default block cache is 2 GiB per table partition; a worker owning 6
partitions of 2 tables would reserve 24 GiB. It is set from ``EXCHANGE_ROCKSDB_BLOCK_CACHE_BYTES``.
"""

from __future__ import annotations

from typing import Any

from brokerflow.app import app, settings

__all__ = ["engine_state_by_symbol", "orders_by_key", "reference_forwarding", "rocksdb_options"]


def rocksdb_options() -> dict[str, Any]:
    size = settings.exchange_rocksdb_block_cache_bytes
    return {
        "driver": "rocksdict",
        "block_cache_size": size,
        "block_cache_compressed_size": size,
        "write_buffer_size": 4 * 1024 * 1024,
        "max_write_buffer_number": 2,
    }


def _bytes_table(name: str, help: str) -> Any:
    """A RocksDB table of raw bytes, co-partitioned with the command topic."""
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        options=rocksdb_options(),
        help=help,
    )


orders_by_key = _bytes_table(
    "orders_by_key", "SYMBOL|orderId -> resting order record, or the closed marker"
)
engine_state_by_symbol = _bytes_table(
    "engine_state_by_symbol", "SYMBOL -> engine counters, reference price, last session closed"
)
reference_forwarding = _bytes_table(
    "reference_forwarding",
    "TOPIC|SYMBOL -> reference price forwarded and held; #next-offset|TOPIC -> offset",
)
