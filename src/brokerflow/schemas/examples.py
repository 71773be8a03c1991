"""One valid, hand-built instance of every concrete message class, in ``EXAMPLES``.

Sample data, not used by the package itself (``brokerflow.schemas`` does not import it): the
schema unit tests check each example's wire form, the integration suite round-trips every one
through a real Kafka broker, and a reader sees what each payload looks like::

    from brokerflow.schemas.examples import EXAMPLES

The values tell one small story: account ``acc-42`` buys 100 PETR4 on our exchange while the
Binance connector streams BTCUSDT. A new message class needs an example here; a unit test fails
until it has one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeVar

from brokerflow.schemas import (
    AccountOpened,
    AlertCancelled,
    AlertCondition,
    AlertCreated,
    AmendOrder,
    BarClosed,
    BarWindow,
    BestBidAsk,
    CancelOrder,
    CancelRequestRejected,
    CashDeposited,
    CashSettled,
    CashWithdrawn,
    CloseSession,
    CustodyTransferredIn,
    DeadLetter,
    DepositCash,
    FillSettled,
    FundsHeld,
    FundsReleased,
    HoldReleaseReason,
    Message,
    NotificationChannel,
    NotificationUndelivered,
    OpenAccount,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicateIgnored,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
    OrderType,
    OrderUpdateNotification,
    PayloadEncoding,
    PlaceOrder,
    PriceAlertTriggered,
    Quote,
    RequestAccepted,
    RequestAmend,
    RequestCancel,
    RequestOrder,
    RequestRefused,
    SetReferencePrice,
    SettleDue,
    SharesHeld,
    SharesReleased,
    Side,
    TimeInForce,
    Trade,
    TradeExecuted,
    TransferCustody,
    WithdrawCash,
)
from brokerflow.schemas.book import BookLevel, BookSnapshot, BookUpdate

__all__ = ["EXAMPLES", "example_of"]

# --- orders ----------------------------------------------------------------------------------

PLACE_ORDER = PlaceOrder(
    order_id="ord-0001",
    account_id="acc-42",
    symbol="PETR4",
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.DAY,
    quantity=Decimal("100"),
    price=Decimal("38.12"),
    idempotency_key="6f1d0c2e-5b1a-4c1e-9a55-0d4f3b9f2a10",
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)
CANCEL_ORDER = CancelOrder(
    order_id="ord-0003",
    account_id="acc-42",
    symbol="PETR4",
    event_time=datetime(2026, 1, 2, 13, 31, 0, tzinfo=UTC),
)
AMEND_ORDER = AmendOrder(
    order_id="ord-0005",
    account_id="acc-42",
    symbol="PETR4",
    quantity=Decimal("60"),
    event_time=datetime(2026, 1, 2, 13, 32, 0, tzinfo=UTC),
)
CLOSE_SESSION = CloseSession(
    symbol="PETR4",
    session_date=date(2026, 1, 2),
    event_time=datetime(2026, 1, 2, 20, 0, 0, tzinfo=UTC),
)
SET_REFERENCE_PRICE = SetReferencePrice(
    symbol="PETR4",
    price=Decimal("38.10"),
    source="b3",
    event_time=datetime(2026, 1, 2, 13, 29, 59, tzinfo=UTC),
)
ORDER_SUBMITTED = OrderSubmitted(
    order_id="ord-0001",
    account_id="acc-42",
    symbol="PETR4",
    sequence=0,
    filled_quantity=Decimal("0"),
    leaves_quantity=Decimal("100"),
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.DAY,
    quantity=Decimal("100"),
    price=Decimal("38.12"),
    idempotency_key="6f1d0c2e-5b1a-4c1e-9a55-0d4f3b9f2a10",
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)
ORDER_ACCEPTED = OrderAccepted(
    order_id="ord-0001",
    account_id="acc-42",
    symbol="PETR4",
    sequence=1,
    filled_quantity=Decimal("0"),
    leaves_quantity=Decimal("100"),
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.DAY,
    quantity=Decimal("100"),
    price=Decimal("38.12"),
    event_time=datetime(2026, 1, 2, 13, 30, 0, 125000, tzinfo=UTC),
    receive_time=datetime(2026, 1, 2, 13, 30, 0, 126000, tzinfo=UTC),
)
ORDER_REJECTED = OrderRejected(
    order_id="ord-0002",
    account_id="acc-42",
    symbol="PETR4",
    sequence=2,
    filled_quantity=Decimal("0"),
    leaves_quantity=Decimal("0"),
    reason="TICK_SIZE",
    detail="price 38.125 is not a multiple of the tick size 0.01",
    event_time=datetime(2026, 1, 2, 13, 30, 1, tzinfo=UTC),
)
ORDER_PARTIALLY_FILLED = OrderPartiallyFilled(
    order_id="ord-0001",
    account_id="acc-42",
    symbol="PETR4",
    sequence=3,
    filled_quantity=Decimal("40"),
    leaves_quantity=Decimal("60"),
    trade_id="trd-0001",
    last_price=Decimal("38.10"),
    last_quantity=Decimal("40"),
    event_time=datetime(2026, 1, 2, 13, 30, 2, tzinfo=UTC),
)
ORDER_FILLED = OrderFilled(
    order_id="ord-0001",
    account_id="acc-42",
    symbol="PETR4",
    sequence=5,
    filled_quantity=Decimal("100"),
    leaves_quantity=Decimal("0"),
    trade_id="trd-0002",
    last_price=Decimal("38.11"),
    last_quantity=Decimal("60"),
    event_time=datetime(2026, 1, 2, 13, 30, 3, tzinfo=UTC),
)
ORDER_CANCELLED = OrderCancelled(
    order_id="ord-0003",
    account_id="acc-42",
    symbol="PETR4",
    sequence=7,
    filled_quantity=Decimal("0"),
    leaves_quantity=Decimal("0"),
    reason="USER",
    cancelled_quantity=Decimal("50"),
    event_time=datetime(2026, 1, 2, 13, 31, 0, 2000, tzinfo=UTC),
)
ORDER_EXPIRED = OrderExpired(
    order_id="ord-0004",
    account_id="acc-42",
    symbol="PETR4",
    sequence=90,
    filled_quantity=Decimal("50"),
    leaves_quantity=Decimal("0"),
    expired_quantity=Decimal("50"),
    event_time=datetime(2026, 1, 2, 21, 0, 0, tzinfo=UTC),
)
ORDER_AMENDED = OrderAmended(
    order_id="ord-0005",
    account_id="acc-42",
    symbol="PETR4",
    status="OPEN",
    sequence=8,
    filled_quantity=Decimal("0"),
    leaves_quantity=Decimal("60"),
    quantity=Decimal("60"),
    price=Decimal("38.00"),
    kept_priority=True,
    event_time=datetime(2026, 1, 2, 13, 32, 0, 1000, tzinfo=UTC),
)
ORDER_DUPLICATE_IGNORED = OrderDuplicateIgnored(
    order_id="ord-0001",
    symbol="PETR4",
    command="PlaceOrder",
    sequence=9,
    event_time=datetime(2026, 1, 2, 13, 32, 30, tzinfo=UTC),
)

# --- trades ----------------------------------------------------------------------------------

TRADE_EXECUTED = TradeExecuted(
    trade_id="trd-0001",
    symbol="PETR4",
    sequence=4,
    price=Decimal("38.10"),
    quantity=Decimal("40"),
    aggressor_side=Side.BUY,
    taker_order_id="ord-0001",
    maker_order_id="ord-0009",
    buy_order_id="ord-0001",
    sell_order_id="ord-0009",
    buy_account_id="acc-42",
    sell_account_id="acc-7",
    event_time=datetime(2026, 1, 2, 13, 30, 2, tzinfo=UTC),
)

# --- market ----------------------------------------------------------------------------------

TRADE = Trade(
    venue="BINANCE",
    symbol="BTCUSDT",
    trade_id="5120334417",
    price=Decimal("94112.01000000"),
    quantity=Decimal("0.00106000"),
    aggressor_side=Side.SELL,
    event_time=datetime(2026, 1, 2, 13, 30, 0, 122000, tzinfo=UTC),
    receive_time=datetime(2026, 1, 2, 13, 30, 0, 180000, tzinfo=UTC),
)
BEST_BID_ASK = BestBidAsk(
    venue="BINANCE",
    symbol="BTCUSDT",
    bid_price=Decimal("94112.00000000"),
    bid_quantity=Decimal("1.20420000"),
    ask_price=Decimal("94112.01000000"),
    ask_quantity=Decimal("0.31000000"),
    update_id=400900217,
    event_time=datetime(2026, 1, 2, 13, 30, 0, 181000, tzinfo=UTC),
    receive_time=datetime(2026, 1, 2, 13, 30, 0, 181000, tzinfo=UTC),
)
BOOK_SNAPSHOT = BookSnapshot(
    symbol="PETR4",
    sequence=1,
    bids=(
        BookLevel(price=Decimal("38.48"), quantity=Decimal("300"), orders=2),
        BookLevel(price=Decimal("38.47"), quantity=Decimal("100"), orders=1),
    ),
    asks=(BookLevel(price=Decimal("38.50"), quantity=Decimal("200"), orders=1),),
    event_time=datetime(2026, 1, 2, 13, 30, tzinfo=UTC),
)
BOOK_UPDATE = BookUpdate(
    symbol="PETR4",
    sequence=2,
    bids=(BookLevel(price=Decimal("38.49"), quantity=Decimal("100"), orders=1),),
    asks=(BookLevel(price=Decimal("38.50"), quantity=Decimal("0"), orders=0),),
    best_bid=BookLevel(price=Decimal("38.49"), quantity=Decimal("100"), orders=1),
    best_ask=None,
    top_changed=True,
    event_time=datetime(2026, 1, 2, 13, 30, 0, 250000, tzinfo=UTC),
)
QUOTE = Quote(
    venue="BRAPI",
    symbol="PETR4",
    currency="BRL",
    last_price=Decimal("38.12"),
    day_high=Decimal("38.45"),
    day_low=Decimal("37.9"),
    day_open=Decimal("38.0"),
    previous_close=Decimal("37.9"),
    volume=Decimal("41234500"),
    change=Decimal("0.22"),
    change_percent=Decimal("0.58"),
    event_time=datetime(2026, 1, 2, 20, 7, 0, tzinfo=UTC),
    receive_time=datetime(2026, 1, 2, 20, 7, 2, 500000, tzinfo=UTC),
)

# --- stats -----------------------------------------------------------------------------------

# Four trades in 13:30-13:31: 0.5 @ 94112.01 BUY, 0.25 @ 94120.00 BUY, 0.25 @ 94100.50 SELL,
# 1 @ 94110.00 SELL. VWAP = 188221.13 / 2 = 94110.565.
BAR_CLOSED = BarClosed(
    venue="BINANCE",
    symbol="BTCUSDT",
    window=BarWindow.MINUTE_1,
    window_start=datetime(2026, 1, 2, 13, 30, tzinfo=UTC),
    window_end=datetime(2026, 1, 2, 13, 31, tzinfo=UTC),
    trade_count=4,
    open=Decimal("94112.01"),
    high=Decimal("94120.00"),
    low=Decimal("94100.50"),
    close=Decimal("94110.00"),
    volume=Decimal("2.00"),
    vwap=Decimal("94110.565"),
    buy_volume=Decimal("0.75"),
    sell_volume=Decimal("1.25"),
    bbo_count=120,
    spread_mean=Decimal("0.015"),
    spread_max=Decimal("0.50"),
    event_time=datetime(2026, 1, 2, 13, 31, tzinfo=UTC),
    computed_time=datetime(2026, 1, 2, 13, 31, 0, 250000, tzinfo=UTC),
)

# --- ledger ----------------------------------------------------------------------------------

ACCOUNT_OPENED = AccountOpened(
    account_id="acc-42",
    sequence=0,
    entry_id="acc-42:0",
    currency="BRL",
    user_id="usr-42",
    event_time=datetime(2026, 1, 2, 12, 0, tzinfo=UTC),
)
CASH_DEPOSITED = CashDeposited(
    account_id="acc-42",
    sequence=1,
    entry_id="acc-42:1",
    currency="BRL",
    amount=Decimal("100000.00"),
    reference="pix-e2e-0001",
    event_time=datetime(2026, 1, 2, 12, 5, tzinfo=UTC),
)
FUNDS_HELD = FundsHeld(
    account_id="acc-42",
    sequence=2,
    entry_id="acc-42:2",
    currency="BRL",
    order_id="ord-0001",
    amount=Decimal("3812.00"),
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)
# BUY 40 @ 38.10 against a hold taken at the 38.12 limit: 40 x 38.12 = 1524.80 of it is used,
# cash moves by -(40 x 38.10 + 0.38) = -1524.38.
FILL_SETTLED = FillSettled(
    account_id="acc-42",
    sequence=3,
    entry_id="acc-42:3",
    currency="BRL",
    trade_id="trd-0001",
    order_id="ord-0001",
    symbol="PETR4",
    side=Side.BUY,
    quantity=Decimal("40"),
    price=Decimal("38.10"),
    fees=Decimal("0.38"),
    cash_delta=Decimal("-1524.38"),
    position_delta=Decimal("40"),
    cash_hold_released=Decimal("1524.80"),
    shares_hold_released=Decimal("0"),
    position_quantity=Decimal("40"),
    average_price=Decimal("38.10"),
    realized_pnl=Decimal("0"),
    event_time=datetime(2026, 1, 2, 13, 30, 2, 40000, tzinfo=UTC),
)
FUNDS_RELEASED = FundsReleased(
    account_id="acc-42",
    sequence=4,
    entry_id="acc-42:4",
    currency="BRL",
    order_id="ord-0003",
    amount=Decimal("1906.00"),
    reason=HoldReleaseReason.ORDER_CANCELLED,
    event_time=datetime(2026, 1, 2, 13, 31, 0, 5000, tzinfo=UTC),
)
CASH_WITHDRAWN = CashWithdrawn(
    account_id="acc-42",
    sequence=5,
    entry_id="acc-42:5",
    currency="BRL",
    amount=Decimal("500.00"),
    reference="pix-e2e-0002",
    event_time=datetime(2026, 1, 2, 14, 0, tzinfo=UTC),
)
SHARES_HELD = SharesHeld(
    account_id="acc-42",
    sequence=6,
    entry_id="acc-42:6",
    currency="BRL",
    order_id="ord-0007",
    symbol="PETR4",
    quantity=Decimal("40"),
    event_time=datetime(2026, 1, 2, 15, 0, tzinfo=UTC),
)
SHARES_RELEASED = SharesReleased(
    account_id="acc-42",
    sequence=7,
    entry_id="acc-42:7",
    currency="BRL",
    order_id="ord-0007",
    symbol="PETR4",
    quantity=Decimal("40"),
    reason=HoldReleaseReason.ORDER_EXPIRED,
    event_time=datetime(2026, 1, 2, 21, 0, tzinfo=UTC),
)

CUSTODY_TRANSFERRED_IN = CustodyTransferredIn(
    account_id="acc-42",
    sequence=8,
    entry_id="acc-42:8",
    currency="BRL",
    symbol="VALE3",
    quantity=Decimal("200"),
    price=Decimal("61.20"),
    position_quantity=Decimal("200"),
    average_price=Decimal("61.20"),
    event_time=datetime(2026, 1, 2, 15, 10, tzinfo=UTC),
)
CASH_SETTLED = CashSettled(
    account_id="acc-42",
    sequence=9,
    entry_id="acc-42:9",
    currency="BRL",
    trade_id="trd-0002",
    amount=Decimal("6118.16"),
    settlement_date=date(2026, 1, 6),
    event_time=datetime(2026, 1, 6, 12, 0, tzinfo=UTC),
)

# --- account requests and decisions ------------------------------------------------------------

OPEN_ACCOUNT = OpenAccount(
    request_id="req-0001",
    account_id="acc-42",
    user_id="usr-42",
    event_time=datetime(2026, 1, 2, 12, 0, tzinfo=UTC),
)
DEPOSIT_CASH = DepositCash(
    request_id="req-0002",
    account_id="acc-42",
    currency="BRL",
    amount=Decimal("100000.00"),
    reference="pix-e2e-0001",
    event_time=datetime(2026, 1, 2, 12, 5, tzinfo=UTC),
)
WITHDRAW_CASH = WithdrawCash(
    request_id="req-0003",
    account_id="acc-42",
    currency="BRL",
    amount=Decimal("500.00"),
    event_time=datetime(2026, 1, 2, 14, 0, tzinfo=UTC),
)
TRANSFER_CUSTODY = TransferCustody(
    request_id="req-0004",
    account_id="acc-42",
    symbol="VALE3",
    quantity=Decimal("200"),
    average_price=Decimal("61.20"),
    event_time=datetime(2026, 1, 2, 15, 10, tzinfo=UTC),
)
REQUEST_ORDER = RequestOrder(
    request_id="ord-0001",
    account_id="acc-42",
    order_id="ord-0001",
    symbol="PETR4",
    side=Side.BUY,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.DAY,
    quantity=Decimal("100"),
    price=Decimal("38.12"),
    idempotency_key="5f0c6c1e-2b1e-4c59-9d0f-1f4a2c3b9e10",
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)
REQUEST_CANCEL = RequestCancel(
    request_id="req-0005",
    account_id="acc-42",
    order_id="ord-0001",
    event_time=datetime(2026, 1, 2, 13, 31, tzinfo=UTC),
)
REQUEST_AMEND = RequestAmend(
    request_id="req-0006",
    account_id="acc-42",
    order_id="ord-0001",
    quantity=Decimal("60"),
    event_time=datetime(2026, 1, 2, 13, 30, 30, tzinfo=UTC),
)
SETTLE_DUE = SettleDue(
    request_id="settle-acc-42-2026-01-06",
    account_id="acc-42",
    event_time=datetime(2026, 1, 6, 3, 0, tzinfo=UTC),
)
REQUEST_ACCEPTED = RequestAccepted(
    request_id="ord-0001",
    account_id="acc-42",
    command="RequestOrder",
    order_id="ord-0001",
    event_time=datetime(2026, 1, 2, 13, 30, 0, 123000, tzinfo=UTC),
)
REQUEST_REFUSED = RequestRefused(
    request_id="req-0003",
    account_id="acc-42",
    command="WithdrawCash",
    code="INSUFFICIENT_FUNDS",
    message="withdrawable BRL is 120.00 (settled cash not held for open orders); asked 500.00",
    event_time=datetime(2026, 1, 2, 14, 0, tzinfo=UTC),
)
CANCEL_REQUEST_REJECTED = CancelRequestRejected(
    request_id="req-0005",
    account_id="acc-42",
    command="RequestCancel",
    order_id="ord-0001",
    reason="UNKNOWN_ORDER",
    detail="the order was filled before the cancel reached the exchange",
    event_time=datetime(2026, 1, 2, 13, 31, tzinfo=UTC),
)

# --- notifications ---------------------------------------------------------------------------

ORDER_UPDATE_NOTIFICATION = OrderUpdateNotification(
    notification_id="ntf-0001",
    user_id="usr-42",
    account_id="acc-42",
    channels=(NotificationChannel.IN_APP, NotificationChannel.PUSH),
    message="Your order to BUY 100 PETR4 is partially filled: 40 at 38.10",
    order_id="ord-0001",
    symbol="PETR4",
    side=Side.BUY,
    status="PARTIALLY_FILLED",
    sequence=3,
    filled_quantity=Decimal("40"),
    leaves_quantity=Decimal("60"),
    last_price=Decimal("38.10"),
    last_quantity=Decimal("40"),
    execution_id="PETR4-T3",
    event="OrderPartiallyFilled",
    position_quantity=Decimal("140"),
    event_time=datetime(2026, 1, 2, 13, 30, 2, tzinfo=UTC),
)
PRICE_ALERT_TRIGGERED = PriceAlertTriggered(
    notification_id="ntf-0002",
    user_id="usr-42",
    channels=(NotificationChannel.PUSH,),
    message="PETR4 reached 38.52 (alert: at or above 38.50)",
    alert_id="alr-0001",
    symbol="PETR4",
    condition=AlertCondition.PRICE_AT_OR_ABOVE,
    threshold=Decimal("38.50"),
    price=Decimal("38.52"),
    event_time=datetime(2026, 1, 2, 16, 45, 10, tzinfo=UTC),
)
NOTIFICATION_UNDELIVERED = NotificationUndelivered(
    notification_id="ord-0001:7",
    user_id="usr-42",
    attempts=2,
    reason="UNAVAILABLE",
    detail="the push service answered 503: try again later",
    retry_at=datetime(2026, 1, 2, 13, 30, 5, tzinfo=UTC),
    payload='{"type":"ORDER_UPDATE","sequence":12,"orderId":"ord-0001","status":"FILLED"}',
    event_time=datetime(2026, 1, 2, 13, 30, 3, tzinfo=UTC),
)

ALERT_CREATED = AlertCreated(
    alert_id="alr-0001",
    user_id="usr-42",
    account_id="acc-42",
    symbol="PETR4",
    condition=AlertCondition.PRICE_AT_OR_ABOVE,
    threshold=Decimal("38.50"),
    event_time=datetime(2026, 1, 2, 13, 0, tzinfo=UTC),
)
ALERT_CANCELLED = AlertCancelled(
    alert_id="alr-0002",
    user_id="usr-42",
    symbol="PETR4",
    event_time=datetime(2026, 1, 2, 14, 0, tzinfo=UTC),
)

# --- dead letters ----------------------------------------------------------------------------

DEAD_LETTER = DeadLetter(
    source="binance_ws",
    reason="SCHEMA_INVALID",
    detail="invalid Trade: price: must be greater than zero, got 0",
    fields=("price",),
    payload='{"e":"trade","s":"BTCUSDT","t":5120334418,"p":"0.00000000","q":"1.0"}',
    payload_encoding=PayloadEncoding.UTF8,
    key="BTCUSDT",
    partition=3,
    offset=1042,
    event_time=datetime(2026, 1, 2, 13, 30, 0, 200000, tzinfo=UTC),
)

EXAMPLES: list[Message] = [
    PLACE_ORDER,
    CANCEL_ORDER,
    AMEND_ORDER,
    CLOSE_SESSION,
    SET_REFERENCE_PRICE,
    ORDER_SUBMITTED,
    ORDER_ACCEPTED,
    ORDER_REJECTED,
    ORDER_PARTIALLY_FILLED,
    ORDER_FILLED,
    ORDER_CANCELLED,
    ORDER_EXPIRED,
    ORDER_AMENDED,
    ORDER_DUPLICATE_IGNORED,
    TRADE_EXECUTED,
    TRADE,
    BEST_BID_ASK,
    QUOTE,
    BOOK_SNAPSHOT,
    BOOK_UPDATE,
    BAR_CLOSED,
    ACCOUNT_OPENED,
    CASH_DEPOSITED,
    FUNDS_HELD,
    FILL_SETTLED,
    FUNDS_RELEASED,
    CASH_WITHDRAWN,
    SHARES_HELD,
    SHARES_RELEASED,
    CUSTODY_TRANSFERRED_IN,
    CASH_SETTLED,
    OPEN_ACCOUNT,
    DEPOSIT_CASH,
    WITHDRAW_CASH,
    TRANSFER_CUSTODY,
    REQUEST_ORDER,
    REQUEST_CANCEL,
    REQUEST_AMEND,
    SETTLE_DUE,
    REQUEST_ACCEPTED,
    REQUEST_REFUSED,
    CANCEL_REQUEST_REJECTED,
    ORDER_UPDATE_NOTIFICATION,
    PRICE_ALERT_TRIGGERED,
    NOTIFICATION_UNDELIVERED,
    ALERT_CREATED,
    ALERT_CANCELLED,
    DEAD_LETTER,
]


M = TypeVar("M", bound=Message)


def example_of(cls: type[M]) -> M:
    """The example of one class (exactly one exists per registered class)."""
    (found,) = [example for example in EXAMPLES if isinstance(example, cls)]
    return found
