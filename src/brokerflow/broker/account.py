"""One account's state machine: requests decided, execution reports applied (pure, no clock).

:func:`decide` answers an API request (``brokerflow.schemas.accounts``) and :func:`apply_report`
applies one of the exchange's order events about this account's orders. Both return the new
state and an :class:`Outcome`: the ledger entries (``ledger-events-v1``), the decisions
(``account-events-v1``) and the commands for the exchange (``order-commands-v1``), in that
order within the caller's transaction. Replaying the same inputs gives the same outputs, byte
for byte: every time comes from the input's ``event_time``.

Holds
-----
A BUY holds ``quantity x price + fee`` at placement (a MARKET buy prices at the last market price
plus the collar, rounded up to the currency's decimals); a SELL holds the shares. Each fill uses
its part of the hold, and what an order no longer needs goes back when it ends (filled,
cancelled, expired, rejected) or shrinks (amended). Cash that an order uses comes out of the
hold; a fill below the limit price (price improvement) leaves the difference free.

Fees are charged on an order's cumulative notional: a fill pays ``fee(notional so far) - fees
already paid``. A single fill pays exactly ``fee(quantity x price)``; an order split into many
fills pays what one fill of the same notional would, never a cent more for having been split
(per-fill rounding could make it exceed the fee its hold was sized for). A BUY's hold is
accounted the same way at the order's own price, so the fills of an order filled at its limit
use up exactly its hold.

Refusals change nothing. Sale proceeds with a settlement cycle (B3: D+2) are unsettled until
their date: spendable at once, withdrawable only after the ``CashSettled`` that the first
request or report on or after that date (Sao Paulo) brings; the reconciler's daily ``SettleDue``
is such a request, so proceeds settle on their date even on an idle account.

Reports
-------
A report at or below the last exchange sequence applied for its symbol is a duplicate, and a
report about an order the account does not have open is stale: both are ignored without a word
(and without settling anything). An ``OrderRejected`` answers the command its ``detail`` names
(``PlaceOrder: ...`` closes the order; ``CancelOrder: ...``/``AmendOrder: ...`` mean the pending
cancel or amend lost, said with a ``CancelRequestRejected``). A cancel or amend still pending
when its order fills, expires or is rejected lost too, and so does an amend pending when the
order is cancelled; a cancel pending then (IOC remainder, self-trade) got what it asked for.

A MARKET buy reaches the exchange as a LIMIT IOC at the price its hold was computed at (the
last price plus the collar, down to the tick: :func:`protected_market_buy`), so no fill costs
more than was held; a MARKET sell needs no cap (it holds shares, not cash). An order id may be
reused once its order is closed (the API never does: its order ids are unique).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, Final

from brokerflow.broker.calendar import local_date, settlement_date
from brokerflow.broker.rules import (
    BrokerRules,
    Refusal,
    RefusalCode,
    check_order,
    fee,
    quantum,
    round_up,
)
from brokerflow.broker.state import (
    ZERO,
    AccountState,
    Cash,
    OpenOrder,
    PendingAmend,
    PendingSettlement,
    Position,
)
from brokerflow.instruments import Instrument
from brokerflow.matching.exchange import lot_size_detail, tick_size_detail
from brokerflow.schemas.accounts import (
    CancelRequestRejected,
    RequestAccepted,
    RequestRefused,
)
from brokerflow.schemas.base import format_decimal, format_utc
from brokerflow.schemas.ledger import (
    AccountOpened,
    CashDeposited,
    CashSettled,
    CashWithdrawn,
    CustodyTransferredIn,
    FillSettled,
    FundsHeld,
    FundsReleased,
    HoldReleaseReason,
    SharesHeld,
    SharesReleased,
)
from brokerflow.schemas.orders import (
    AmendOrder,
    CancelOrder,
    OrderType,
    PlaceOrder,
    TimeInForce,
)

__all__ = [
    "AVERAGE_PRICE_DECIMALS",
    "Decision",
    "ExchangeCommand",
    "LedgerEntry",
    "Outcome",
    "apply_report",
    "buy_hold",
    "decide",
]

#: Average costs keep at most this many decimal places (rounded half-even beyond).
AVERAGE_PRICE_DECIMALS: Final = 8
#: Wide enough that no product or quotient of wire values rounds before we say so.
_CONTEXT: Final = Context(prec=60, rounding=ROUND_HALF_EVEN)

LedgerEntry = (
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
Decision = RequestAccepted | RequestRefused | CancelRequestRejected
ExchangeCommand = PlaceOrder | CancelOrder | AmendOrder

_BUY = "BUY"
_MARKET = "MARKET"


@dataclass(slots=True)
class Outcome:
    """What one request or report caused: ledger entries, decisions, exchange commands."""

    ledger: list[LedgerEntry] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    exchange: list[ExchangeCommand] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ledger or self.decisions or self.exchange)


def _average(cost: Decimal, quantity: Decimal) -> Decimal:
    """``cost / quantity`` with at most 8 decimal places (exact when it has fewer)."""
    value = cost / quantity
    if int(value.as_tuple().exponent) < -AVERAGE_PRICE_DECIMALS:
        value = value.quantize(quantum(AVERAGE_PRICE_DECIMALS), rounding=ROUND_HALF_EVEN)
    return value


def _amount(value: Decimal, currency: str) -> str:
    return f"{format_decimal(value)} {currency}"


def buy_hold(
    rules: BrokerRules,
    instrument: Instrument,
    leaves: Decimal,
    price: Decimal,
    attributed: Decimal = ZERO,
    market: bool = False,
) -> Decimal:
    """What a BUY must hold for ``leaves`` more at ``price``: the notional plus the fees it adds
    to the ``attributed`` notional already accounted; rounded up for a MARKET estimate."""
    notional = leaves * price
    total = notional + fee(rules, instrument, attributed + notional)
    if attributed:
        total -= fee(rules, instrument, attributed)
    if market:
        total = round_up(total, rules.decimals(instrument.currency))
    return total


class _Tx:
    """A working copy of one account while a request or report is applied."""

    __slots__ = (
        "cash",
        "changed",
        "event_time",
        "last_sequence",
        "orders",
        "outcome",
        "positions",
        "recently_closed",
        "rules",
        "sequence",
        "settlements",
        "state",
    )

    def __init__(self, rules: BrokerRules, state: AccountState, event_time: datetime) -> None:
        self.rules = rules
        self.state = state
        self.event_time = event_time
        self.sequence = state.next_sequence
        self.cash = dict(state.cash)
        self.positions = dict(state.positions)
        self.orders = dict(state.orders)
        self.settlements = list(state.settlements)
        self.last_sequence = dict(state.last_report_sequence)
        self.recently_closed = dict(state.recently_closed)
        self.outcome = Outcome()
        self.changed = False

    # --- outputs ---------------------------------------------------------------------------

    def entry(self, kind: Callable[..., Any], currency: str, **fields: Any) -> None:
        account = self.state.account_id
        self.outcome.ledger.append(
            kind(
                account_id=account,
                sequence=self.sequence,
                entry_id=f"{account}:{self.sequence}",
                currency=currency,
                event_time=self.event_time,
                **fields,
            )
        )
        self.sequence += 1
        self.changed = True

    def accept(self, request: Any, order_id: str | None = None) -> None:
        self.outcome.decisions.append(
            RequestAccepted(
                request_id=request.request_id,
                account_id=self.state.account_id,
                command=request.type,
                order_id=order_id,
                event_time=self.event_time,
            )
        )

    def refuse(self, request: Any, refusal: Refusal, order_id: str | None = None) -> None:
        self.outcome.decisions.append(_refused(request, refusal, order_id))

    def request_lost(
        self, request_id: str, command: str, order: OpenOrder, reason: str, detail: str
    ) -> None:
        self.outcome.decisions.append(
            CancelRequestRejected(
                request_id=request_id,
                account_id=self.state.account_id,
                command=command,
                order_id=order.order_id,
                event_time=self.event_time,
                reason=reason,
                detail=detail[:1024],
            )
        )

    # --- state -----------------------------------------------------------------------------

    def add_cash(
        self,
        currency: str,
        settled: Decimal = ZERO,
        unsettled: Decimal = ZERO,
        held: Decimal = ZERO,
    ) -> None:
        cash = self.cash.get(currency) or Cash()
        self.cash[currency] = Cash(
            cash.settled + settled, cash.unsettled + unsettled, cash.held + held
        )
        self.changed = True

    def cash_in(self, currency: str) -> Cash:
        return self.cash.get(currency) or Cash()

    def position(self, symbol: str, currency: str) -> Position:
        return self.positions.get(symbol) or Position(symbol, currency)

    def set_position(self, position: Position) -> None:
        self.positions[position.symbol] = position
        self.changed = True

    def set_order(self, order: OpenOrder) -> None:
        self.orders[order.order_id] = order
        self.changed = True

    def drop_order(self, order_id: str) -> None:
        """Close an order; its id stays refused for ``closed_order_memory`` of event time."""
        del self.orders[order_id]
        forget_before = format_utc(self.event_time - self.rules.closed_order_memory)
        self.recently_closed = {
            closed_id: at for closed_id, at in self.recently_closed.items() if at >= forget_before
        }
        self.recently_closed[order_id] = format_utc(self.event_time)
        self.changed = True

    def settle_due(self) -> None:
        """Unsettled proceeds whose date has come (Sao Paulo) become settled cash."""
        if not self.settlements:
            return
        today = local_date(self.event_time)
        waiting: list[PendingSettlement] = []
        for pending in self.settlements:
            if pending.settlement_date > today:
                waiting.append(pending)
                continue
            self.add_cash(pending.currency, settled=pending.amount, unsettled=-pending.amount)
            self.entry(
                CashSettled,
                pending.currency,
                trade_id=pending.trade_id,
                amount=pending.amount,
                settlement_date=pending.settlement_date,
            )
        self.settlements = waiting

    def release(self, order: OpenOrder, amount: Decimal, reason: HoldReleaseReason) -> None:
        """Give back ``amount`` of an order's hold (cash for a BUY, shares for a SELL)."""
        if amount <= 0:
            return
        if order.side == _BUY:
            self.add_cash(order.currency, held=-amount)
            self.entry(
                FundsReleased, order.currency, order_id=order.order_id, amount=amount, reason=reason
            )
        else:
            position = self.position(order.symbol, order.currency)
            self.set_position(replace(position, held=position.held - amount))
            self.entry(
                SharesReleased,
                order.currency,
                order_id=order.order_id,
                symbol=order.symbol,
                quantity=amount,
                reason=reason,
            )

    def result(self) -> tuple[AccountState, Outcome]:
        if not self.changed:
            return self.state, self.outcome
        state = AccountState(
            account_id=self.state.account_id,
            user_id=self.state.user_id,
            next_sequence=self.sequence,
            currency=self.state.currency,
            cash=self.cash,
            positions=self.positions,
            orders=self.orders,
            settlements=tuple(self.settlements),
            last_report_sequence=self.last_sequence,
            recently_closed=self.recently_closed,
        )
        return state, self.outcome


def _refused(request: Any, refusal: Refusal, order_id: str | None) -> RequestRefused:
    return RequestRefused(
        request_id=request.request_id,
        account_id=request.account_id,
        command=request.type,
        order_id=order_id,
        event_time=request.event_time,
        code=str(refusal.code),
        message=refusal.message[:1024],
    )


# --- requests --------------------------------------------------------------------------------


def decide(
    rules: BrokerRules, state: AccountState | None, request: Any
) -> tuple[AccountState | None, Outcome]:
    """Decide one account request: exactly one ``RequestAccepted`` or ``RequestRefused``.

    Settlements due by the request's date come first. A refused request changes nothing else;
    when nothing at all changed the very same ``state`` object is returned.
    """
    kind = request.type
    order_id = getattr(request, "order_id", None)
    if kind == "OpenAccount" and state is None:
        return _open(request)
    if state is None:
        refusal = Refusal(
            RefusalCode.UNKNOWN_ACCOUNT,
            f"account {request.account_id} does not exist; open it first (sign up)",
        )
        return None, Outcome(decisions=[_refused(request, refusal, order_id)])
    handler = _REQUESTS.get(kind)
    if handler is None:
        raise TypeError(f"{kind} is not an account request")
    with localcontext(_CONTEXT):
        tx = _Tx(rules, state, request.event_time)
        tx.settle_due()
        refusal = handler(tx, request)
        if refusal is not None:
            tx.refuse(request, refusal, order_id)
        return tx.result()


def _open(request: Any) -> tuple[AccountState, Outcome]:
    opened = AccountState(account_id=request.account_id, user_id=request.user_id)
    entry = AccountOpened(
        account_id=opened.account_id,
        sequence=0,
        entry_id=f"{opened.account_id}:0",
        currency=opened.currency,
        event_time=request.event_time,
        user_id=opened.user_id,
    )
    accepted = RequestAccepted(
        request_id=request.request_id,
        account_id=opened.account_id,
        command=request.type,
        event_time=request.event_time,
    )
    return opened, Outcome(ledger=[entry], decisions=[accepted])


def _reopen(tx: _Tx, request: Any) -> Refusal:
    return Refusal(RefusalCode.ACCOUNT_EXISTS, f"account {request.account_id} is already open")


def _check_amount(rules: BrokerRules, currency: str, amount: Decimal) -> Refusal | None:
    if currency not in rules.instruments.currencies:
        known = ", ".join(rules.instruments.currencies)
        return Refusal(
            RefusalCode.UNKNOWN_CURRENCY, f"{currency} is not traded here; currencies: {known}"
        )
    places = rules.decimals(currency)
    if amount != amount.quantize(quantum(places)):
        return Refusal(
            RefusalCode.AMOUNT_PRECISION, f"{currency} amounts have at most {places} decimal places"
        )
    return None


def _deposit(tx: _Tx, request: Any) -> Refusal | None:
    refusal = _check_amount(tx.rules, request.currency, request.amount)
    if refusal is not None:
        return refusal
    tx.add_cash(request.currency, settled=request.amount)
    tx.entry(CashDeposited, request.currency, amount=request.amount, reference=request.reference)
    tx.accept(request)
    return None


def _settle(tx: _Tx, request: Any) -> Refusal | None:
    """Nothing beyond what :func:`decide` settles before every request."""
    tx.accept(request)
    return None


def _withdraw(tx: _Tx, request: Any) -> Refusal | None:
    currency = request.currency
    refusal = _check_amount(tx.rules, currency, request.amount)
    if refusal is not None:
        return refusal
    cash = tx.cash_in(currency)
    if request.amount > cash.withdrawable:
        unsettled = ""
        if cash.unsettled > 0:
            unsettled = f"; {_amount(cash.unsettled, currency)} of sale proceeds are unsettled"
        return Refusal(
            RefusalCode.INSUFFICIENT_FUNDS,
            f"withdrawable {_amount(cash.withdrawable, currency)} (settled cash not held for open"
            f" orders), asked {_amount(request.amount, currency)}{unsettled}",
        )
    tx.add_cash(currency, settled=-request.amount)
    tx.entry(CashWithdrawn, currency, amount=request.amount, reference=request.reference)
    tx.accept(request)
    return None


def _unknown_symbol(symbol: str) -> Refusal:
    return Refusal(RefusalCode.UNKNOWN_SYMBOL, f"{symbol} is not traded here; see /api/v1/assets")


def _transfer(tx: _Tx, request: Any) -> Refusal | None:
    instrument = tx.rules.instruments.get(request.symbol)
    if instrument is None:
        return _unknown_symbol(request.symbol)
    symbol_rules = instrument.rules()
    if symbol_rules.quantity_to_lots(request.quantity) is None:
        return Refusal(RefusalCode.LOT_SIZE, lot_size_detail(symbol_rules, request.quantity))
    position = tx.position(instrument.symbol, instrument.currency)
    quantity = position.quantity + request.quantity
    cost = request.quantity * request.average_price
    if position.average_price is not None:
        cost += position.quantity * position.average_price
    average = _average(cost, quantity)
    tx.set_position(replace(position, quantity=quantity, average_price=average))
    tx.entry(
        CustodyTransferredIn,
        instrument.currency,
        symbol=instrument.symbol,
        quantity=request.quantity,
        price=request.average_price,
        position_quantity=quantity,
        average_price=average,
    )
    tx.accept(request)
    return None


def _order(tx: _Tx, request: Any) -> Refusal | None:
    rules = tx.rules
    refusal = check_order(rules, request)
    if refusal is not None:
        return refusal
    order_id = request.order_id
    if order_id in tx.orders:
        return Refusal(
            RefusalCode.ORDER_ID_IN_USE,
            f"order {order_id} is open in this account; choose another order id",
        )
    if order_id in tx.recently_closed:
        return Refusal(
            RefusalCode.ORDER_ID_IN_USE,
            f"order {order_id} was placed already and closed at {tx.recently_closed[order_id]}; "
            "choose another order id",
        )
    instrument = rules.instruments[request.symbol]
    currency = instrument.currency
    side = str(request.side)
    order_type = str(request.order_type)
    quantity: Decimal = request.quantity
    order = OpenOrder(
        order_id=order_id,
        symbol=instrument.symbol,
        side=side,
        order_type=order_type,
        time_in_force=str(request.time_in_force),
        quantity=quantity,
        price=request.price,
        currency=currency,
    )
    if side == _BUY:
        market = order_type == _MARKET
        if market:
            if request.market_price is None:
                return Refusal(
                    RefusalCode.NO_MARKET_PRICE,
                    f"no market price is known for {instrument.symbol}, so a MARKET buy cannot be"
                    " held for; send a LIMIT order",
                )
            collar = 1 + rules.market_buy_collar_pct / 100
            order = replace(order, estimate=request.market_price * collar)
        price = order.hold_price
        assert price is not None  # a LIMIT order has a price (schema), a MARKET buy an estimate
        hold = buy_hold(rules, instrument, quantity, price, market=market)
        power = tx.cash_in(currency).buying_power
        if hold > power:
            return Refusal(
                RefusalCode.INSUFFICIENT_BUYING_POWER,
                f"buying power {_amount(power, currency)}, the order needs"
                f" {_amount(hold, currency)} (quantity x price plus fees"
                + (f", at the last price plus {rules.market_buy_collar_pct} %)" if market else ")"),
            )
        tx.add_cash(currency, held=hold)
        tx.set_order(replace(order, hold=hold))
        tx.entry(FundsHeld, currency, order_id=order_id, amount=hold)
    else:
        position = tx.position(instrument.symbol, currency)
        if position.available < quantity:
            return Refusal(
                RefusalCode.INSUFFICIENT_SHARES,
                f"{format_decimal(position.available)} {instrument.symbol} free to sell"
                f" ({format_decimal(position.held)} held for open sells), the order needs"
                f" {format_decimal(quantity)}; no short selling",
            )
        tx.set_position(replace(position, held=position.held + quantity))
        tx.set_order(replace(order, hold=quantity))
        tx.entry(
            SharesHeld, currency, order_id=order_id, symbol=instrument.symbol, quantity=quantity
        )
    tx.accept(request, order_id)
    place = PlaceOrder(
        order_id=order_id,
        account_id=tx.state.account_id,
        symbol=instrument.symbol,
        side=request.side,
        order_type=request.order_type,
        time_in_force=request.time_in_force,
        quantity=quantity,
        price=request.price,
        idempotency_key=request.idempotency_key,
        event_time=request.event_time,
    )
    if side == _BUY and order_type == _MARKET:
        place = protected_market_buy(place, order.hold_price, instrument.tick_size)
    tx.outcome.exchange.append(place)
    return None


def protected_market_buy(place: PlaceOrder, estimate: Decimal, tick: Decimal) -> PlaceOrder:
    """A MARKET buy goes to the exchange as a LIMIT IOC at its hold's price, down to the tick.

    Market-order protection, as exchanges offer it: the order still takes what the book offers
    now and never rests, but it cannot sweep past the price its hold was computed at, so a fill
    never costs more than was held. What the protection price leaves unfilled is cancelled
    (``IOC_REMAINDER``) and its hold released."""
    protection = (estimate / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    return place.model_copy(
        update={
            "order_type": OrderType.LIMIT,
            "time_in_force": TimeInForce.IOC,
            "price": max(protection, tick),
        }
    )


def _unknown_order(order_id: str) -> Refusal:
    return Refusal(
        RefusalCode.UNKNOWN_ORDER,
        f"no open order {order_id} in this account (never placed, or already filled, cancelled,"
        " expired or rejected)",
    )


def _cancel(tx: _Tx, request: Any) -> Refusal | None:
    order = tx.orders.get(request.order_id)
    if order is None:
        return _unknown_order(request.order_id)
    if order.cancel_request is not None:
        return Refusal(
            RefusalCode.CANCEL_PENDING,
            f"a cancel of order {order.order_id} is already on its way to the exchange",
        )
    tx.set_order(replace(order, cancel_request=request.request_id))
    tx.accept(request, order.order_id)
    tx.outcome.exchange.append(
        CancelOrder(
            order_id=order.order_id,
            account_id=tx.state.account_id,
            symbol=order.symbol,
            event_time=request.event_time,
        )
    )
    return None


def _amend(tx: _Tx, request: Any) -> Refusal | None:
    rules = tx.rules
    order = tx.orders.get(request.order_id)
    if order is None:
        return _unknown_order(request.order_id)
    if order.cancel_request is not None:
        return Refusal(
            RefusalCode.CANCEL_PENDING,
            f"order {order.order_id} is being cancelled; it can no longer be amended",
        )
    if order.amend is not None:
        return Refusal(
            RefusalCode.AMEND_PENDING,
            f"an amend of order {order.order_id} is on its way to the exchange; wait for it",
        )
    if order.order_type == _MARKET:
        return Refusal(
            RefusalCode.ORDER_NOT_OPEN,
            f"order {order.order_id} is a MARKET order: it never rests, so it cannot be amended",
        )
    instrument = rules.instruments.get(order.symbol)
    if instrument is None:
        return _unknown_symbol(order.symbol)
    symbol_rules = instrument.rules()
    if request.price is not None and symbol_rules.price_to_ticks(request.price) is None:
        return Refusal(RefusalCode.TICK_SIZE, tick_size_detail(symbol_rules, request.price))
    if request.quantity is not None and symbol_rules.quantity_to_lots(request.quantity) is None:
        return Refusal(RefusalCode.LOT_SIZE, lot_size_detail(symbol_rules, request.quantity))
    quantity = order.quantity if request.quantity is None else request.quantity
    price = order.price if request.price is None else request.price
    assert price is not None  # a LIMIT order
    if quantity <= order.filled:
        return Refusal(
            RefusalCode.AMEND_BELOW_FILLED,
            f"new quantity {format_decimal(quantity)} does not exceed the filled quantity"
            f" {format_decimal(order.filled)}; cancel the order instead",
        )
    leaves = quantity - order.filled
    currency = order.currency
    if order.side == _BUY:
        needed = buy_hold(rules, instrument, leaves, price, order.attributed)
        extra = max(ZERO, needed - order.hold)
        power = tx.cash_in(currency).buying_power
        if extra > power:
            return Refusal(
                RefusalCode.INSUFFICIENT_BUYING_POWER,
                f"buying power {_amount(power, currency)}, the amended order needs"
                f" {_amount(extra, currency)} more than it holds",
            )
        if extra:
            tx.add_cash(currency, held=extra)
            tx.entry(FundsHeld, currency, order_id=order.order_id, amount=extra)
    else:
        extra = max(ZERO, leaves - order.hold)
        position = tx.position(order.symbol, currency)
        if extra > position.available:
            return Refusal(
                RefusalCode.INSUFFICIENT_SHARES,
                f"{format_decimal(position.available)} {order.symbol} free to sell, the amended"
                f" order needs {format_decimal(extra)} more; no short selling",
            )
        if extra:
            tx.set_position(replace(position, held=position.held + extra))
            tx.entry(
                SharesHeld, currency, order_id=order.order_id, symbol=order.symbol, quantity=extra
            )
    pending = PendingAmend(request.request_id, request.quantity, request.price, extra)
    tx.set_order(replace(order, hold=order.hold + extra, amend=pending))
    tx.accept(request, order.order_id)
    tx.outcome.exchange.append(
        AmendOrder(
            order_id=order.order_id,
            account_id=tx.state.account_id,
            symbol=order.symbol,
            quantity=request.quantity,
            price=request.price,
            event_time=request.event_time,
        )
    )
    return None


_REQUESTS: Final[dict[str, Callable[[_Tx, Any], Refusal | None]]] = {
    "OpenAccount": _reopen,
    "DepositCash": _deposit,
    "WithdrawCash": _withdraw,
    "TransferCustody": _transfer,
    "RequestOrder": _order,
    "RequestCancel": _cancel,
    "RequestAmend": _amend,
    "SettleDue": _settle,
}


# --- execution reports -----------------------------------------------------------------------


def apply_report(
    rules: BrokerRules, state: AccountState | None, report: Any
) -> tuple[AccountState | None, Outcome]:
    """Apply one of the exchange's order events about this account's order.

    A report at or below the last sequence applied for its symbol (a duplicate), about an order
    this account has not open, or for no known account changes nothing and says nothing (the
    same ``state`` object is returned).
    """
    if state is None:
        return None, Outcome()
    handler = _REPORTS.get(report.type)
    if handler is None:
        raise TypeError(f"{report.type} is not an execution report")
    symbol = report.symbol
    if report.sequence <= state.last_report_sequence.get(symbol, -1):
        return state, Outcome()
    order = state.orders.get(report.order_id)
    if order is None:
        return state, Outcome()
    with localcontext(_CONTEXT):
        tx = _Tx(rules, state, report.event_time)
        tx.settle_due()
        tx.last_sequence[symbol] = report.sequence
        tx.changed = True
        handler(tx, order, report)
        return tx.result()


def _instrument(tx: _Tx, order: OpenOrder) -> Instrument:
    instrument = tx.rules.instruments.get(order.symbol)
    if instrument is None:
        raise LookupError(
            f"order {order.order_id} is on {order.symbol}, which the instrument catalog no longer"
            " lists; restore it in INSTRUMENTS_PATH to settle the order"
        )
    return instrument


def _accepted(tx: _Tx, order: OpenOrder, report: Any) -> None:
    tx.set_order(replace(order, acknowledged=True))


def _lose_pending(tx: _Tx, order: OpenOrder, reason: str, cancel_too: bool) -> None:
    """The order closed under a pending amend (and cancel): tell the user they lost."""
    detail = f"order {order.order_id} closed first ({reason})"
    if cancel_too and order.cancel_request is not None:
        tx.request_lost(order.cancel_request, "RequestCancel", order, reason, detail)
    if order.amend is not None:
        tx.request_lost(order.amend.request_id, "RequestAmend", order, reason, detail)


def _fill(tx: _Tx, order: OpenOrder, report: Any) -> None:
    rules = tx.rules
    instrument = _instrument(tx, order)
    currency = order.currency
    quantity: Decimal = report.last_quantity
    price: Decimal = report.last_price
    gross = quantity * price
    notional = order.notional + gross
    fees_so_far = fee(rules, instrument, notional)
    fees = fees_so_far - order.fees
    filled = order.filled + quantity
    closes = report.type == "OrderFilled"
    position = tx.position(order.symbol, currency)
    if order.side == _BUY:
        hold_price = order.hold_price
        assert hold_price is not None
        attributed = order.attributed + quantity * hold_price
        share = quantity * hold_price + fee(rules, instrument, attributed)
        share -= fee(rules, instrument, order.attributed)
        if order.order_type == _MARKET:  # its hold was rounded up to whole cents; so is its use
            share = round_up(share, rules.decimals(currency))
        used = min(order.hold, share)
        cost = gross + fees
        tx.add_cash(currency, settled=-cost, held=-used)
        owned = position.quantity + quantity
        cost_basis = gross + fees
        if position.average_price is not None:
            cost_basis += position.quantity * position.average_price
        average = _average(cost_basis, owned)
        tx.set_position(replace(position, quantity=owned, average_price=average))
        tx.entry(
            FillSettled,
            currency,
            trade_id=report.trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fees=fees,
            cash_delta=-cost,
            position_delta=quantity,
            cash_hold_released=used,
            shares_hold_released=ZERO,
            position_quantity=owned,
            average_price=average,
            realized_pnl=ZERO,
        )
        order = replace(order, attributed=attributed, hold=order.hold - used)
    else:
        decimals = rules.decimals(currency)
        basis = position.average_price if position.average_price is not None else ZERO
        realized = ((price - basis) * quantity - fees).quantize(
            quantum(decimals), rounding=ROUND_HALF_EVEN
        )
        proceeds = gross - fees
        owned = position.quantity - quantity
        average = position.average_price if owned else None
        tx.set_position(
            replace(
                position,
                quantity=owned,
                held=position.held - quantity,
                average_price=average,
                realized_pnl=position.realized_pnl + realized,
            )
        )
        due = None
        if instrument.settlement_days > 0 and proceeds > 0:
            due = settlement_date(tx.event_time, instrument.settlement_days)
            tx.add_cash(currency, unsettled=proceeds)
            tx.settlements.append(PendingSettlement(report.trade_id, currency, proceeds, due))
        else:
            tx.add_cash(currency, settled=proceeds)
        tx.entry(
            FillSettled,
            currency,
            trade_id=report.trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fees=fees,
            cash_delta=proceeds,
            position_delta=-quantity,
            cash_hold_released=ZERO,
            shares_hold_released=quantity,
            position_quantity=owned,
            average_price=average,
            realized_pnl=realized,
            settlement_date=due,
        )
        order = replace(order, hold=order.hold - quantity)
    order = replace(order, filled=filled, notional=notional, fees=fees_so_far)
    if closes:
        tx.release(order, order.hold, HoldReleaseReason.ORDER_FILLED)
        _lose_pending(tx, order, "ORDER_FILLED", cancel_too=True)
        tx.drop_order(order.order_id)
    else:
        tx.set_order(order)


def _closer(reason: HoldReleaseReason, cancel_lost: bool) -> Callable[[_Tx, OpenOrder, Any], None]:
    def close(tx: _Tx, order: OpenOrder, report: Any) -> None:
        tx.release(order, order.hold, reason)
        _lose_pending(tx, order, reason.value, cancel_too=cancel_lost)
        tx.drop_order(order.order_id)

    return close


_cancelled = _closer(HoldReleaseReason.ORDER_CANCELLED, cancel_lost=False)
_expired = _closer(HoldReleaseReason.ORDER_EXPIRED, cancel_lost=True)
_place_rejected = _closer(HoldReleaseReason.ORDER_REJECTED, cancel_lost=True)


def _rejected_command(report: Any, order: OpenOrder) -> str:
    """Which command an ``OrderRejected`` answers: the exchange's detail starts with its name."""
    detail: str = report.detail
    for command in ("PlaceOrder", "CancelOrder", "AmendOrder"):
        if detail.startswith(command):
            return command
    if report.reason == "AMEND_BELOW_FILLED":
        return "AmendOrder"
    if report.reason == "UNKNOWN_ORDER":
        return "CancelOrder" if order.cancel_request is not None else "AmendOrder"
    return "PlaceOrder"


def _rejected(tx: _Tx, order: OpenOrder, report: Any) -> None:
    command = _rejected_command(report, order)
    if command == "PlaceOrder":
        _place_rejected(tx, order, report)
        return
    if command == "CancelOrder":
        if order.cancel_request is not None:
            tx.request_lost(
                order.cancel_request, "RequestCancel", order, report.reason, report.detail
            )
            tx.set_order(replace(order, cancel_request=None))
        return
    if order.amend is None:
        return
    tx.request_lost(order.amend.request_id, "RequestAmend", order, report.reason, report.detail)
    order = replace(order, amend=None)
    tx.set_order(order)
    _trim_hold(tx, order)


def _trim_hold(tx: _Tx, order: OpenOrder) -> None:
    """Release what the order holds beyond what its leaves can still cost."""
    if order.side == _BUY:
        price = order.hold_price
        assert price is not None
        needed = buy_hold(
            tx.rules,
            _instrument(tx, order),
            order.leaves,
            price,
            order.attributed,
            market=order.order_type == _MARKET,
        )
    else:
        needed = order.leaves
    excess = order.hold - needed
    if excess > 0:
        tx.release(order, excess, HoldReleaseReason.ORDER_AMENDED)
        tx.set_order(replace(order, hold=needed))


def _amended(tx: _Tx, order: OpenOrder, report: Any) -> None:
    price = report.price if report.price is not None else order.price
    order = replace(order, quantity=report.quantity, price=price, amend=None)
    tx.set_order(order)
    _trim_hold(tx, order)


_REPORTS: Final[dict[str, Callable[[_Tx, OpenOrder, Any], None]]] = {
    "OrderAccepted": _accepted,
    "OrderRejected": _rejected,
    "OrderPartiallyFilled": _fill,
    "OrderFilled": _fill,
    "OrderCancelled": _cancelled,
    "OrderExpired": _expired,
    "OrderAmended": _amended,
}
