"""Pure price-time-priority matching core (no I/O)."""
