"""The read models as folds: (current document, one event) -> new document, or None.

Pure: no I/O, no clock. The projector (:mod:`.projector`) reads the documents a batch of events
touches, folds the events into them here, and writes back what changed with conditional updates
(:mod:`.store`). Because every fold is decided by a sequence number the event carries, folding an
event a second time changes nothing: at-least-once delivery, exactly-once effect.

Three read models, as the API reads them (``brokerflow.api``), decimals as strings::

    orders     _id = orderId     inserted PENDING by the API; updated from order-events-v1
                                 (guarded by the exchange's per-symbol ``sequence``), fees from
                                 ledger FillSettled, a refusal from account-events-v1
    accounts   _id = accountId   cash / held / unsettled per currency, shares held per symbol,
                                 from every ledger entry in the account's gap-free ``sequence``
    positions  _id = "acc|SYM"   quantity, average cost, realized P&L after the last fill

Which fold applies when:

==========================  ================================================================
order event                 applies to an existing order document if ``sequence`` >
                            ``lastSequence`` (per-symbol, so monotonic per order)
ledger entry                applies to its account if ``sequence`` == ``doc.sequence + 1``
                            (``AccountOpened`` is 0 and creates it); lower is a duplicate,
                            higher a gap that :class:`GapBuffer` holds back
position (fill, transfer)   applies if ``sequence`` > the position's own ``sequence`` (the
                            ledger sequence that last set it; a field beyond the API's shape)
RequestRefused (an order)   applies while the order is still PENDING
==========================  ================================================================

A rejected cancel or amend is the exchange answering a command, not the order: the engine says
so with reason ``UNKNOWN_ORDER`` / ``AMEND_BELOW_FILLED`` or a ``detail`` naming the command
(``"CancelOrder: ..."``), and an order already on the book is never rejected as a placement. The
order's status does not change (:func:`is_lost_command`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Generic, TypeVar

from brokerflow.schemas.accounts import RequestOrder, RequestRefused
from brokerflow.schemas.base import Message, format_decimal, format_utc
from brokerflow.schemas.ledger import (
    AccountOpened,
    CashDeposited,
    CashSettled,
    CashWithdrawn,
    CustodyTransferredIn,
    FillSettled,
    FundsHeld,
    FundsReleased,
    SharesHeld,
    SharesReleased,
)
from brokerflow.schemas.orders import (
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
)

__all__ = [
    "ACCOUNTS",
    "ACTIVITIES",
    "AVERAGE_PRICE_PLACES",
    "FILL_FEES",
    "LEDGER_EVENTS",
    "LOST_COMMAND_REASONS",
    "ORDERS",
    "ORDER_EVENTS",
    "ORDER_HISTORY",
    "POSITIONS",
    "PROJECTION_COLLECTIONS",
    "Document",
    "GapBuffer",
    "LedgerStep",
    "Sequenced",
    "activity_document",
    "attach_fees",
    "fill_key",
    "fold_account",
    "fold_order",
    "fold_position",
    "fold_refusal",
    "is_lost_command",
    "ledger_step",
    "new_order_document",
    "order_event_is_duplicate",
    "position_id",
]

#: Collection names (the API reads the first three under the same names).
ORDERS = "orders"
ACCOUNTS = "accounts"
POSITIONS = "positions"
#: The projector's own: fees of a fill settled before the exchange's fill event was projected.
FILL_FEES = "projection_fill_fees"
#: Every collection the projector writes: what ``brokerflow projections rebuild`` swaps.
#: Each order's state after every event (:mod:`.history`).
ORDER_HISTORY = "order_events"
#: Every ledger entry of every account, as on the wire plus ``_id`` = its ``entryId``: the
#: activity feed (``GET /api/v1/account/activities``).
ACTIVITIES = "activities"
PROJECTION_COLLECTIONS = (ORDERS, ACCOUNTS, POSITIONS, FILL_FEES, ORDER_HISTORY, ACTIVITIES)


def activity_document(entry: Message) -> Document:
    """A ledger entry as the activity feed stores it."""
    return {"_id": entry.__dict__["entry_id"], **entry.to_wire()}


#: ``averagePrice`` of an order: sum(price x quantity) / filled, rounded half-even to this.
AVERAGE_PRICE_PLACES = 8
_AVERAGE_QUANTUM = Decimal(1).scaleb(-AVERAGE_PRICE_PLACES)

#: ``OrderRejected`` reasons that answer a cancel or amend, never a placement.
LOST_COMMAND_REASONS = frozenset({"UNKNOWN_ORDER", "AMEND_BELOW_FILLED"})
_COMMAND_PREFIXES = ("CancelOrder:", "AmendOrder:")

Document = dict[str, Any]

OrderEventT = (
    OrderAccepted
    | OrderRejected
    | OrderPartiallyFilled
    | OrderFilled
    | OrderCancelled
    | OrderExpired
    | OrderAmended
)
#: The order events that change an order document (OrderSubmitted and OrderDuplicateIgnored
#: change nothing here).
ORDER_EVENTS: tuple[type[Message], ...] = (
    OrderAccepted,
    OrderRejected,
    OrderPartiallyFilled,
    OrderFilled,
    OrderCancelled,
    OrderExpired,
    OrderAmended,
)
LedgerEventT = (
    AccountOpened
    | CashDeposited
    | CashWithdrawn
    | CustodyTransferredIn
    | CashSettled
    | FundsHeld
    | FundsReleased
    | SharesHeld
    | SharesReleased
    | FillSettled
)
LEDGER_EVENTS: tuple[type[Message], ...] = (
    AccountOpened,
    CashDeposited,
    CashWithdrawn,
    CustodyTransferredIn,
    CashSettled,
    FundsHeld,
    FundsReleased,
    SharesHeld,
    SharesReleased,
    FillSettled,
)
_OPEN_STATUSES = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value})


def _dec(value: Any) -> Decimal:
    """A stored decimal string as a Decimal; absent or unreadable counts as 0."""
    if value is None or isinstance(value, bool | float):
        return Decimal(0)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
    return result if result.is_finite() else Decimal(0)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def fill_key(order_id: str, trade_id: str) -> str:
    """The ``_id`` of a fill's fees in :data:`FILL_FEES`."""
    return f"{order_id}|{trade_id}"


def position_id(account_id: str, symbol: str) -> str:
    return f"{account_id}|{symbol}"


# --- orders ----------------------------------------------------------------------------------
def new_order_document(request: RequestOrder, user_id: str) -> Document:
    """The PENDING order as the API writes it before publishing the request (the projector's
    folds update it after; a rebuild makes it from the request on account-commands-v1)."""
    now = format_utc(request.event_time)
    price = None if request.price is None else format_decimal(request.price)
    return {
        "_id": request.order_id,
        "orderId": request.order_id,
        "userId": user_id,
        "accountId": request.account_id,
        "symbol": request.symbol,
        "side": request.side.value,
        "type": request.order_type.value,
        "timeInForce": request.time_in_force.value,
        "quantity": format_decimal(request.quantity),
        "price": price,
        "status": OrderStatus.PENDING.value,
        "filledQuantity": "0",
        "leavesQuantity": format_decimal(request.quantity),
        "averagePrice": None,
        "fills": [],
        "rejectReason": None,
        "rejectMessage": None,
        "idempotencyKey": request.idempotency_key,
        "createdAt": now,
        "updatedAt": now,
        "lastSequence": -1,
        # What the accounts agent decides a MARKET buy's hold from: kept so that the reconciler
        # can send the very same request again.
        "marketPrice": None
        if request.market_price is None
        else format_decimal(request.market_price),
    }


def order_event_is_duplicate(doc: Document, event: OrderEventT) -> bool:
    """Already applied: the exchange's sequence is not beyond the document's last one."""
    return event.sequence <= int(doc.get("lastSequence", -1))


def is_lost_command(doc: Document, event: OrderRejected) -> bool:
    """Whether a reject answers a cancel or amend (the order itself is unchanged)."""
    return (
        event.reason in LOST_COMMAND_REASONS
        or event.detail.startswith(_COMMAND_PREFIXES)
        or doc.get("status") in _OPEN_STATUSES
    )


def _average_price(fills: list[Document], filled: Decimal) -> str | None:
    if filled <= 0:
        return None
    notional = sum((_dec(f.get("price")) * _dec(f.get("quantity")) for f in fills), Decimal(0))
    return format_decimal((notional / filled).quantize(_AVERAGE_QUANTUM, ROUND_HALF_EVEN))


def fold_order(
    doc: Document | None, event: OrderEventT, fees: Decimal | None = None
) -> Document | None:
    """The order document after one exchange event; None when it does not change.

    ``fees`` are the fill's fees when the ledger already settled it (else the fill's ``fees``
    stays null until :func:`attach_fees`). Orders without a document (other participants' orders
    on the exchange) and events already applied change nothing.
    """
    if doc is None or not isinstance(event, ORDER_EVENTS):
        return None
    if order_event_is_duplicate(doc, event):
        return None
    if isinstance(event, OrderRejected) and is_lost_command(doc, event):
        return None
    new = copy.deepcopy(doc)
    new["status"] = event.status.value
    new["filledQuantity"] = format_decimal(event.filled_quantity)
    new["leavesQuantity"] = format_decimal(event.leaves_quantity)
    new["lastSequence"] = event.sequence
    new["updatedAt"] = format_utc(event.event_time)
    if isinstance(event, OrderAccepted):
        new["quantity"] = format_decimal(event.quantity)
        new["price"] = _text(event.price)
    elif isinstance(event, OrderAmended):
        new["quantity"] = format_decimal(event.quantity)
        if event.price is not None:
            new["price"] = format_decimal(event.price)
    elif isinstance(event, OrderRejected):
        new["rejectReason"] = event.reason
        new["rejectMessage"] = event.detail or None
    elif isinstance(event, OrderPartiallyFilled | OrderFilled):
        fills: list[Document] = list(new.get("fills") or [])
        if not any(f.get("executionId") == event.trade_id for f in fills):
            fills.append(
                {
                    "executionId": event.trade_id,
                    "price": format_decimal(event.last_price),
                    "quantity": format_decimal(event.last_quantity),
                    "fees": _text(fees),
                    "time": format_utc(event.event_time),
                }
            )
        new["fills"] = fills
        new["averagePrice"] = _average_price(fills, event.filled_quantity)
    return new


def attach_fees(doc: Document | None, event: FillSettled) -> Document | None:
    """The order document with the settled fill's fees; None if the fill is not there yet (or
    already has them)."""
    if doc is None:
        return None
    fees = format_decimal(event.fees)
    fills: list[Document] = doc.get("fills") or []
    for index, fill in enumerate(fills):
        if fill.get("executionId") == event.trade_id:
            if fill.get("fees") == fees:
                return None
            new = copy.deepcopy(doc)
            new["fills"][index]["fees"] = fees
            return new
    return None


def fold_refusal(doc: Document | None, event: RequestRefused) -> Document | None:
    """A refused RequestOrder: the PENDING order becomes REJECTED with the agent's code.

    Not ``ORDER_ID_IN_USE``: that refuses a second copy of an order the API sent again (a retry
    with the same idempotency key), and says nothing about the first copy, which stands."""
    if doc is None or event.command != "RequestOrder" or event.code == "ORDER_ID_IN_USE":
        return None
    if doc.get("status") != OrderStatus.PENDING.value:
        return None
    new = copy.deepcopy(doc)
    new["status"] = OrderStatus.REJECTED.value
    new["rejectReason"] = event.code
    new["rejectMessage"] = event.message
    new["leavesQuantity"] = "0"
    new["updatedAt"] = format_utc(event.event_time)
    return new


# --- accounts --------------------------------------------------------------------------------


class LedgerStep(StrEnum):
    """What an account's next ledger entry is to a document at some sequence."""

    APPLY = "APPLY"  # the next one
    DUPLICATE = "DUPLICATE"  # at or below the document's sequence: applied already
    GAP = "GAP"  # beyond the next one: an entry in between is missing


def ledger_step(doc: Document | None, event: LedgerEventT) -> LedgerStep:
    expected = 0 if doc is None else int(doc["sequence"]) + 1
    if event.sequence == expected:
        return LedgerStep.APPLY
    return LedgerStep.DUPLICATE if event.sequence < expected else LedgerStep.GAP


def _add(balances: Document, currency: str, name: str, delta: Decimal) -> None:
    entry = balances.setdefault(currency, {"cash": "0", "held": "0", "unsettled": "0"})
    entry[name] = format_decimal(_dec(entry.get(name)) + delta)


def _add_shares(shares: Document, symbol: str, delta: Decimal) -> None:
    quantity = _dec(shares.get(symbol)) + delta
    if quantity == 0:
        shares.pop(symbol, None)
    else:
        shares[symbol] = format_decimal(quantity)


def fold_account(doc: Document | None, event: LedgerEventT) -> Document | None:
    """The account document after its next ledger entry; None unless the entry is the next one
    (:func:`ledger_step`)."""
    if ledger_step(doc, event) is not LedgerStep.APPLY:
        return None
    if isinstance(event, AccountOpened):
        return {
            "_id": event.account_id,
            "accountId": event.account_id,
            "userId": event.user_id,
            "sequence": 0,
            "balances": {event.currency: {"cash": "0", "held": "0", "unsettled": "0"}},
            "sharesHeld": {},
        }
    if doc is None:  # an entry 0 that is not AccountOpened: nothing to apply it to
        return None
    new = copy.deepcopy(doc)
    new["sequence"] = event.sequence
    balances: Document = new.setdefault("balances", {})
    shares: Document = new.setdefault("sharesHeld", {})
    currency = event.currency
    if isinstance(event, CashDeposited):
        _add(balances, currency, "cash", event.amount)
    elif isinstance(event, CashWithdrawn):
        _add(balances, currency, "cash", -event.amount)
    elif isinstance(event, FundsHeld):
        _add(balances, currency, "held", event.amount)
    elif isinstance(event, FundsReleased):
        _add(balances, currency, "held", -event.amount)
    elif isinstance(event, SharesHeld):
        _add_shares(shares, event.symbol, event.quantity)
    elif isinstance(event, SharesReleased):
        _add_shares(shares, event.symbol, -event.quantity)
    elif isinstance(event, CashSettled):
        _add(balances, currency, "unsettled", -event.amount)
        _add(balances, currency, "cash", event.amount)
    elif isinstance(event, FillSettled):
        bucket = "cash" if event.settlement_date is None else "unsettled"
        _add(balances, currency, bucket, event.cash_delta)
        if event.cash_hold_released:
            _add(balances, currency, "held", -event.cash_hold_released)
        if event.shares_hold_released:
            _add_shares(shares, event.symbol, -event.shares_hold_released)
    # CustodyTransferredIn moves no cash: only the sequence (and the position) change.
    return new


def fold_position(
    doc: Document | None, event: FillSettled | CustodyTransferredIn
) -> Document | None:
    """The position after a fill or a custody transfer; None if this entry set it already.

    Quantity and average cost are the event's (it carries the position after it); the realized
    P&L accumulates the event's ``realized_pnl`` (that of this fill).
    """
    if doc is not None and event.sequence <= int(doc.get("sequence", -1)):
        return None
    realized = _dec(None if doc is None else doc.get("realizedPnl"))
    if isinstance(event, FillSettled):
        realized += event.realized_pnl
    return {
        "_id": position_id(event.account_id, event.symbol),
        "accountId": event.account_id,
        "symbol": event.symbol,
        "currency": event.currency,
        "quantity": format_decimal(event.position_quantity),
        "averagePrice": _text(event.average_price),
        "realizedPnl": format_decimal(realized),
        "updatedAt": format_utc(event.event_time),
        "sequence": event.sequence,
    }


# --- gaps --------------------------------------------------------------------------------------

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass
class Sequenced(Generic[T]):
    """What :meth:`GapBuffer.feed` made of one key's items."""

    #: To apply now, in sequence order (items of this batch and earlier held ones).
    ready: list[T] = field(default_factory=list)
    #: At or below what is applied already (or held twice): skip.
    duplicates: list[T] = field(default_factory=list)
    #: Newly held back behind a gap.
    held: list[T] = field(default_factory=list)


class GapBuffer(Generic[K, T]):
    """Per-key items that must apply in gap-free sequence, holding back what comes early.

    ``sequence_of`` gives an item's sequence. The buffer is in memory: the projector commits a
    partition's offset no further than its earliest held item (:meth:`held`), so a restart reads
    the held items again rather than losing them.
    """

    def __init__(self, sequence_of: Callable[[T], int]) -> None:
        self._sequence_of = sequence_of
        self._held: dict[K, dict[int, T]] = {}

    def feed(self, key: K, expected: int, items: Iterable[T]) -> Sequenced[T]:
        """Sort ``items`` (in arrival order) against the next ``expected`` sequence of ``key``."""
        out: Sequenced[T] = Sequenced()
        held = self._held.pop(key, {})
        for sequence in [s for s in held if s < expected]:  # applied meanwhile (another reader)
            out.duplicates.append(held.pop(sequence))
        while expected in held:  # the document caught up with what was held
            out.ready.append(held.pop(expected))
            expected += 1
        for item in items:
            sequence = self._sequence_of(item)
            if sequence < expected or sequence in held:
                out.duplicates.append(item)
            elif sequence > expected:
                held[sequence] = item
                out.held.append(item)
            else:
                out.ready.append(item)
                expected += 1
                while expected in held:
                    out.ready.append(held.pop(expected))
                    expected += 1
        if held:
            self._held[key] = held
        return out

    def missing(self, key: K) -> int | None:
        """The lowest sequence held for ``key`` (the gap is just below it), or None."""
        held = self._held.get(key)
        return min(held) if held else None

    def held_for(self, key: K) -> int:
        return len(self._held.get(key, {}))

    def held(self) -> Iterator[tuple[K, T]]:
        for key, items in self._held.items():
            for item in items.values():
                yield key, item

    def __len__(self) -> int:
        return sum(len(items) for items in self._held.values())

    def discard(self, drop: Callable[[T], bool]) -> int:
        """Forget held items ``drop`` accepts (their partition went to another reader)."""
        dropped = 0
        for key in list(self._held):
            items = self._held[key]
            for sequence in [s for s, item in items.items() if drop(item)]:
                del items[sequence]
                dropped += 1
            if not items:
                del self._held[key]
        return dropped

    def snapshot(self) -> dict[K, dict[int, T]]:
        """A copy to :meth:`restore` when a batch fails before its effects are written."""
        return {key: dict(items) for key, items in self._held.items()}

    def restore(self, snapshot: dict[K, dict[int, T]]) -> None:
        self._held = {key: dict(items) for key, items in snapshot.items()}
