"""The broker's RocksDB-backed Faust table: one record per account, never a ledger.

:data:`accounts_by_id` is co-partitioned with ``account-commands-v1`` and
``execution-reports-v1`` (all keyed by account), so a write goes to the changelog partition of the
record being processed, which is the account's partition:

* ``b"ACCOUNT_ID"`` -> the account's state (:class:`~brokerflow.broker.AccountState`: balances,
  holds, positions, open orders, pending settlements, the last exchange sequence per symbol).
* ``b"#next-offset|TOPIC"`` -> the next input record to process in that partition of ``TOPIC``.
"""

from __future__ import annotations

from brokerflow.tables.store import bytes_table

__all__ = ["accounts_by_id"]

accounts_by_id = bytes_table(
    "accounts_by_id", "ACCOUNT_ID -> account state; #next-offset|TOPIC -> offset"
)
