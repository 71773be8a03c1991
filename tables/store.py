"""How every table of the app is declared: raw bytes in RocksDB, co-partitioned with its agent's
input topics (``TOPIC_PARTITIONS`` partitions), written only through
:class:`~brokerflow.agents.exactly_once.TableWrites`.

RocksDB options: Faust's default block cache is 2 GiB per table partition; a worker owning 6
partitions of 4 tables would reserve 48 GiB. It is set from ``EXCHANGE_ROCKSDB_BLOCK_CACHE_BYTES``.
"""

from __future__ import annotations

from typing import Any

from brokerflow.app import app, settings

__all__ = ["bytes_table", "rocksdb_options"]


def rocksdb_options() -> dict[str, Any]:
    size = settings.exchange_rocksdb_block_cache_bytes
    return {
        "driver": "rocksdict",
        "block_cache_size": size,
        "block_cache_compressed_size": size,
        "write_buffer_size": 4 * 1024 * 1024,
        "max_write_buffer_number": 2,
    }


def bytes_table(name: str, help: str) -> Any:
    """A RocksDB table of raw bytes with one partition per input partition."""
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        options=rocksdb_options(),
        help=help,
    )
