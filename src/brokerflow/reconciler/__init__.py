"""The reconciler: stuck orders' requests sent again, and every account checked against its
ledger. :mod:`.compare` and :mod:`.orders` are pure; :mod:`.service` runs them
(``python -m brokerflow.reconciler``)."""

from brokerflow.reconciler.compare import Discrepancy, LedgerFold, check_agent, check_read_model
from brokerflow.reconciler.service import Reconciler, run_reconciler

__all__ = [
    "Discrepancy",
    "LedgerFold",
    "Reconciler",
    "check_agent",
    "check_read_model",
    "run_reconciler",
]
