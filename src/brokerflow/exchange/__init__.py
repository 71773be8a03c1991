"""The exchange service's glue around the pure matching core (:mod:`brokerflow.matching`).

* :mod:`.io`: put commands on the command topic and read what the exchange wrote (committed
  only); the agent's own kept-open ``read_committed`` reader.
* :mod:`.state`: how books are stored in the RocksDB tables and rebuilt from them.
* :mod:`.schedule`: session closes and the reference-price forwarding rules (pure).
* :mod:`.datadir`: a worker's data-dir slot and the clean-shutdown marker.

The Faust agents themselves live in :mod:`brokerflow.agents`, the tables in
:mod:`brokerflow.tables`.
"""
