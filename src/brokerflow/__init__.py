"""brokerflow."""
