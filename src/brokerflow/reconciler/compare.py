"""The reconciler's pure half: what the ledger says each account holds, and where a copy differs.

No I/O, no clock. ``ledger-events-v1`` is the truth: :class:`LedgerFold` folds it with the
projector's own folds (:func:`~brokerflow.projections.folds.fold_account`,
:func:`~brokerflow.projections.folds.fold_position`), so "what the read model should say" has
one definition. Two copies are compared with it:

* the read models (MongoDB ``accounts`` and ``positions``, written by the projector);
* the accounts agent's own state (its table's changelog, :class:`~brokerflow.broker.AccountState`).

In-flight events. Every copy says how far into the account's ledger it is: a read-model document
its ``sequence`` (a position the ledger sequence that last set it), the agent's state its
``next_sequence - 1``. A copy is compared with the fold *at that same sequence*
(:meth:`LedgerFold.at`), never with the latest: a projector that lags behind is not a false alarm,
and a tampered field is caught at whatever sequence the copy is. A copy further along than the
ledger read for the pass (an entry committed after the pass started) is skipped as ``ahead``.
Only a missing document cannot say how far it is: it counts once the account (or position) is
older than a grace period, when the projector has had time to write it.

Discrepancy fields (low-cardinality, for the gauge; ``path`` names the exact place)::

    cash, held, unsettled           balances.<CUR>.cash ...     (agent: cash settled/held/unsettled)
    shares_held                     sharesHeld.<SYM>            (agent: position held)
    position_quantity, average_price, realized_pnl   positions.<SYM>.quantity ...
    missing_document                accounts / positions.<SYM>  (no copy at all)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from brokerflow.broker.state import AccountState
from brokerflow.projections.folds import (
    LEDGER_EVENTS,
    Document,
    LedgerStep,
    fold_account,
    fold_position,
    ledger_step,
)
from brokerflow.schemas.base import Message, format_decimal
from brokerflow.schemas.ledger import CustodyTransferredIn, FillSettled

__all__ = [
    "Discrepancy",
    "Field",
    "LedgerFold",
    "Outcome",
    "Snapshot",
    "Source",
    "check_agent",
    "check_read_model",
]


class Source(StrEnum):
    READ_MODEL = "read_model"
    AGENT = "agent"


class Field(StrEnum):
    CASH = "cash"
    HELD = "held"
    UNSETTLED = "unsettled"
    SHARES_HELD = "shares_held"
    POSITION_QUANTITY = "position_quantity"
    AVERAGE_PRICE = "average_price"
    REALIZED_PNL = "realized_pnl"
    MISSING_DOCUMENT = "missing_document"


class Outcome(StrEnum):
    COMPARED = "compared"  # at the ledger's latest sequence
    BEHIND = "behind"  # at an earlier sequence of the ledger (compared there)
    AHEAD = "ahead"  # beyond what the pass read: skipped
    RECENT = "recent"  # no copy yet, but within the grace period: skipped
    MISSING = "missing"  # no copy, past the grace period: a discrepancy


@dataclass(frozen=True, slots=True)
class Discrepancy:
    source: Source
    account_id: str
    field: Field
    #: Where exactly: ``balances.BRL.cash``, ``positions.PETR4.averagePrice``, ``accounts``.
    path: str
    expected: str | None
    found: str | None

    def describe(self) -> str:
        return (
            f"{self.source.value}: account {self.account_id} {self.path} is {self.found}, "
            f"the ledger says {self.expected}"
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One account as the ledger has it after entry ``sequence``."""

    sequence: int
    account: Document
    positions: Mapping[str, Document]


@dataclass
class _Folding:
    account: Document
    positions: dict[str, Document] = field(default_factory=dict)
    #: When the account was opened, and each position first set (entry event times).
    opened_at: datetime | None = None
    position_since: dict[str, datetime] = field(default_factory=dict)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)


class LedgerFold:
    """Each account's ledger folded in sequence, with copies kept at the sequences wanted.

    ``wanted`` names, per account, the sequences a copy is at (read before the ledger is): only
    those are kept, so memory stays one account document per account plus a few copies."""

    def __init__(self, wanted: Mapping[str, Iterable[int]] | None = None) -> None:
        self._wanted = {account: set(seqs) for account, seqs in (wanted or {}).items()}
        self._accounts: dict[str, _Folding] = {}
        #: Entries that were not the account's next one (a duplicate or a gap): counted, skipped.
        self.out_of_sequence = 0

    def apply(self, event: Message) -> None:
        if not isinstance(event, LEDGER_EVENTS):
            return
        account_id: str = event.account_id  # type: ignore[attr-defined]
        folding = self._accounts.get(account_id)
        current = None if folding is None else folding.account
        if ledger_step(current, event) is not LedgerStep.APPLY:  # type: ignore[arg-type]
            self.out_of_sequence += 1
            return
        document = fold_account(current, event)  # type: ignore[arg-type]
        if document is None:
            self.out_of_sequence += 1
            return
        if folding is None:
            folding = self._accounts[account_id] = _Folding(document, opened_at=event.event_time)  # type: ignore[attr-defined]
        folding.account = document
        if isinstance(event, FillSettled | CustodyTransferredIn):
            moved = fold_position(folding.positions.get(event.symbol), event)
            if moved is not None:
                folding.positions[event.symbol] = moved
                folding.position_since.setdefault(event.symbol, event.event_time)
        sequence: int = event.sequence  # type: ignore[attr-defined]
        if sequence in self._wanted.get(account_id, ()):
            folding.snapshots[sequence] = self._snapshot(folding, sequence)

    @staticmethod
    def _snapshot(folding: _Folding, sequence: int) -> Snapshot:
        return Snapshot(sequence, copy.deepcopy(folding.account), copy.deepcopy(folding.positions))

    def accounts(self) -> list[str]:
        return sorted(self._accounts)

    def latest(self, account_id: str) -> Snapshot | None:
        folding = self._accounts.get(account_id)
        if folding is None:
            return None
        return Snapshot(int(folding.account["sequence"]), folding.account, folding.positions)

    def at(self, account_id: str, sequence: int) -> Snapshot | None:
        """The account after entry ``sequence`` (the latest one, or one that was wanted)."""
        folding = self._accounts.get(account_id)
        if folding is None:
            return None
        if int(folding.account["sequence"]) == sequence:
            return self.latest(account_id)
        return folding.snapshots.get(sequence)

    def opened_at(self, account_id: str) -> datetime | None:
        folding = self._accounts.get(account_id)
        return None if folding is None else folding.opened_at

    def position_since(self, account_id: str, symbol: str) -> datetime | None:
        folding = self._accounts.get(account_id)
        return None if folding is None else folding.position_since.get(symbol)


# --- comparing ---------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _text(value: Any) -> str | None:
    number = _dec(value)
    return str(value) if number is None and value is not None else _fmt(number)


def _fmt(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


class _Differ:
    def __init__(self, source: Source, account_id: str) -> None:
        self.source = source
        self.account_id = account_id
        self.found: list[Discrepancy] = []

    def amount(self, kind: Field, path: str, expected: Any, found: Any, *, zero: bool) -> None:
        """Compare two decimals (``zero``: absent counts as 0; else absent is None)."""
        want, have = _dec(expected), _dec(found)
        if zero:
            want = want if want is not None else Decimal(0)
            have = have if have is not None else (Decimal(0) if found is None else None)
        if want != have:
            self.found.append(
                Discrepancy(self.source, self.account_id, kind, path, _fmt(want), _text(found))
            )

    def missing(self, path: str, expected: str) -> None:
        self.found.append(
            Discrepancy(self.source, self.account_id, Field.MISSING_DOCUMENT, path, expected, None)
        )


_BALANCE_FIELDS = (("cash", Field.CASH), ("held", Field.HELD), ("unsettled", Field.UNSETTLED))


def _position_differences(
    differ: _Differ, symbol: str, expected: Document | None, quantity: Any, average: Any, pnl: Any
) -> None:
    want = expected or {}
    differ.amount(
        Field.POSITION_QUANTITY,
        f"positions.{symbol}.quantity",
        want.get("quantity"),
        quantity,
        zero=True,
    )
    differ.amount(
        Field.AVERAGE_PRICE,
        f"positions.{symbol}.averagePrice",
        want.get("averagePrice"),
        average,
        zero=False,
    )
    differ.amount(
        Field.REALIZED_PNL,
        f"positions.{symbol}.realizedPnl",
        want.get("realizedPnl"),
        pnl,
        zero=True,
    )


def _is_old(since: datetime | None, cutoff: datetime) -> bool:
    return since is not None and since <= cutoff


def check_read_model(
    fold: LedgerFold,
    account_id: str,
    account: Document | None,
    positions: Mapping[str, Document],
    *,
    settled_before: datetime,
) -> tuple[Outcome, list[Discrepancy]]:
    """The read models of one account (its ``accounts`` document and ``positions`` by symbol)
    against the ledger. ``settled_before``: a copy of what the ledger created before this must
    exist (the grace period's start)."""
    differ = _Differ(Source.READ_MODEL, account_id)
    latest = fold.latest(account_id)
    if latest is None:
        return Outcome.AHEAD, []
    if account is None:
        if not _is_old(fold.opened_at(account_id), settled_before):
            return Outcome.RECENT, []
        differ.missing("accounts", f"sequence {latest.sequence}")
        return Outcome.MISSING, differ.found
    at = int(account.get("sequence", -1))
    if at > latest.sequence:
        return Outcome.AHEAD, []
    expected = fold.at(account_id, at)
    if expected is None:  # not a sequence the pass asked to keep: compare next time
        return Outcome.AHEAD, []
    want_balances: Document = expected.account.get("balances") or {}
    have_balances: Document = account.get("balances") or {}
    for currency in sorted(set(want_balances) | set(have_balances)):
        want, have = want_balances.get(currency) or {}, have_balances.get(currency) or {}
        for name, kind in _BALANCE_FIELDS:
            path = f"balances.{currency}.{name}"
            differ.amount(kind, path, want.get(name), have.get(name), zero=True)
    want_shares: Document = expected.account.get("sharesHeld") or {}
    have_shares: Document = account.get("sharesHeld") or {}
    for symbol in sorted(set(want_shares) | set(have_shares)):
        differ.amount(
            Field.SHARES_HELD,
            f"sharesHeld.{symbol}",
            want_shares.get(symbol),
            have_shares.get(symbol),
            zero=True,
        )
    # Positions are written before their account, so every position the ledger had set by the
    # account document's sequence exists; each is compared at its own sequence.
    for symbol in sorted(set(expected.positions) | set(positions)):
        document = positions.get(symbol)
        if document is None:
            if _is_old(fold.position_since(account_id, symbol), settled_before):
                differ.missing(
                    f"positions.{symbol}", f"sequence {expected.positions[symbol]['sequence']}"
                )
            continue
        position_at = int(document.get("sequence", -1))
        if position_at > latest.sequence:
            continue
        current = latest.positions.get(symbol)
        if current is not None and int(current.get("sequence", -1)) == position_at:
            want_position: Document | None = current  # set last by that entry: no copy needed
        else:
            snapshot = fold.at(account_id, position_at)
            if snapshot is None:
                continue
            want_position = snapshot.positions.get(symbol)
        _position_differences(
            differ,
            symbol,
            want_position,
            document.get("quantity"),
            document.get("averagePrice"),
            document.get("realizedPnl"),
        )
    return (Outcome.COMPARED if at == latest.sequence else Outcome.BEHIND), differ.found


def check_agent(
    fold: LedgerFold,
    account_id: str,
    state: AccountState | None,
    *,
    settled_before: datetime,
) -> tuple[Outcome, list[Discrepancy]]:
    """The accounts agent's state of one account against the ledger (the agent wrote that
    ledger, in the same transactions as its state: any difference is a bug)."""
    differ = _Differ(Source.AGENT, account_id)
    latest = fold.latest(account_id)
    if latest is None:
        return Outcome.AHEAD, []
    if state is None:
        if not _is_old(fold.opened_at(account_id), settled_before):
            return Outcome.RECENT, []
        differ.missing("accounts_by_id", f"sequence {latest.sequence}")
        return Outcome.MISSING, differ.found
    at = state.next_sequence - 1
    if at > latest.sequence:
        return Outcome.AHEAD, []
    expected = fold.at(account_id, at)
    if expected is None:
        return Outcome.AHEAD, []
    want_balances: Document = expected.account.get("balances") or {}
    for currency in sorted(set(want_balances) | set(state.cash)):
        want = want_balances.get(currency) or {}
        cash = state.cash_in(currency)
        have = {"cash": cash.settled, "held": cash.held, "unsettled": cash.unsettled}
        for name, kind in _BALANCE_FIELDS:
            path = f"balances.{currency}.{name}"
            differ.amount(kind, path, want.get(name), have[name], zero=True)
    want_shares: Document = expected.account.get("sharesHeld") or {}
    for symbol in sorted(set(want_shares) | {s for s, p in state.positions.items() if p.held}):
        position = state.positions.get(symbol)
        differ.amount(
            Field.SHARES_HELD,
            f"sharesHeld.{symbol}",
            want_shares.get(symbol),
            None if position is None else position.held,
            zero=True,
        )
    for symbol in sorted(set(expected.positions) | set(state.positions)):
        position = state.positions.get(symbol)
        _position_differences(
            differ,
            symbol,
            expected.positions.get(symbol),
            None if position is None else position.quantity,
            None if position is None else position.average_price,
            None if position is None else position.realized_pnl,
        )
    return (Outcome.COMPARED if at == latest.sequence else Outcome.BEHIND), differ.found
