"""`brokerflow run`: the whole system as supervised child processes."""
