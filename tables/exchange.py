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

Declared by :func:`brokerflow.tables.store.bytes_table` (RocksDB options there).
"""

from __future__ import annotations

from brokerflow.tables.store import bytes_table

__all__ = ["engine_state_by_symbol", "orders_by_key", "reference_forwarding"]


orders_by_key = bytes_table(
    "orders_by_key", "SYMBOL|orderId -> resting order record, or the closed marker"
)
engine_state_by_symbol = bytes_table(
    "engine_state_by_symbol", "SYMBOL -> engine counters, reference price, last session closed"
)
reference_forwarding = bytes_table(
    "reference_forwarding",
    "TOPIC|SYMBOL -> reference price forwarded and held; #next-offset|TOPIC -> offset",
)
