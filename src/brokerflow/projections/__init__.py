"""Read models (CQRS): order, account and position documents in MongoDB folded from the topics.

Where a reader starts: :mod:`.folds` (the pure folds, one per read model, and the documents'
shapes), :mod:`.store` (conditional writes that make a replay a no-op on FerretDB and MongoDB),
:mod:`.projector` (the consumer loop). Run it alone with ``python -m brokerflow.projections``, or
in-process with :func:`run_projector`::

    stop = asyncio.Event()
    task = asyncio.create_task(run_projector(settings, stop))
    ...
    stop.set(); stats = await task          # ProjectorStats: applied, duplicates, held...
"""

from brokerflow.projections.folds import (
    ACCOUNTS,
    FILL_FEES,
    ORDERS,
    POSITIONS,
    GapBuffer,
    LedgerStep,
    attach_fees,
    fold_account,
    fold_order,
    fold_position,
    fold_refusal,
    ledger_step,
)
from brokerflow.projections.projector import Projector, ProjectorStats, run_projector
from brokerflow.projections.store import ReadModelStore

__all__ = [
    "ACCOUNTS",
    "FILL_FEES",
    "ORDERS",
    "POSITIONS",
    "GapBuffer",
    "LedgerStep",
    "Projector",
    "ProjectorStats",
    "ReadModelStore",
    "attach_fees",
    "fold_account",
    "fold_order",
    "fold_position",
    "fold_refusal",
    "ledger_step",
    "run_projector",
]
