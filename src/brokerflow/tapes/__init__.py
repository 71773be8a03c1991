"""Tape generators: the bundled market-data sample tape (:mod:`.market`, ``python -m
brokerflow.tapes.market``) and seeded order-command tapes for the exchange (:mod:`.orders`)."""
