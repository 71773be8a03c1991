"""Every payload brokerflow puts on a topic, and the registry that reads them back.

Where to start: :mod:`~brokerflow.schemas.base` for the wire conventions (camelCase, ``type`` +
``schemaVersion``, decimal strings, UTC ``Z`` times), then :func:`decode` / :func:`encode`, and
:mod:`~brokerflow.schemas.examples` for one sample payload of every class. A class's ``type`` is
its name, except ``OrderUpdateNotification``, whose ``type`` is the seed's ``OrderUpdate``.

=====================  =========================================================================
family                 messages
=====================  =========================================================================
orders                 PlaceOrder, CancelOrder, AmendOrder, CloseSession, SetReferencePrice
                       (commands); OrderSubmitted ...
                       OrderDuplicateIgnored (events)
trades                 TradeExecuted
market                 Trade, BestBidAsk, Quote (normalized vendor ticks)
book                   BookSnapshot, BookUpdate (the exchange's own book, top N)
stats                  BarClosed
ledger                 AccountOpened, CashDeposited, CashWithdrawn, CustodyTransferredIn,
                       CashSettled, FundsHeld, FundsReleased, SharesHeld, SharesReleased,
                       FillSettled
accounts               OpenAccount, DepositCash, WithdrawCash, TransferCustody, RequestOrder,
                       RequestCancel, RequestAmend, SettleDue (requests); RequestAccepted,
                       RequestRefused, CancelRequestRejected (decisions)
notifications          OrderUpdateNotification (type ``OrderUpdate``), PriceAlertTriggered,
                       NotificationUndelivered
alerts                 AlertCreated, AlertCancelled (price-alert commands)
deadletter             DeadLetter
=====================  =========================================================================
"""

from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.schemas.accounts import (
    AccountCommand,
    AccountEvent,
    CancelRequestRejected,
    DepositCash,
    OpenAccount,
    RequestAccepted,
    RequestAmend,
    RequestCancel,
    RequestOrder,
    RequestRefused,
    SettleDue,
    TransferCustody,
    WithdrawCash,
)
from brokerflow.schemas.alerts import AlertCancelled, AlertCommand, AlertCreated
from brokerflow.schemas.base import (
    Currency,
    DecimalStr,
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
)
from brokerflow.schemas.book import BookLevel, BookSnapshot, BookUpdate
from brokerflow.schemas.deadletter import DeadLetter, PayloadEncoding
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
    LedgerEvent,
    SharesHeld,
    SharesReleased,
)
from brokerflow.schemas.market import BestBidAsk, Quote, Trade, Venue
from brokerflow.schemas.notifications import (
    AlertCondition,
    Notification,
    NotificationChannel,
    NotificationUndelivered,
    OrderUpdateNotification,
    PriceAlertTriggered,
)
from brokerflow.schemas.orders import (
    AmendOrder,
    CancelOrder,
    CloseSession,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderCommand,
    OrderDuplicateIgnored,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PlaceOrder,
    SetReferencePrice,
    Side,
    TimeInForce,
)
from brokerflow.schemas.registry import (
    MESSAGE_CLASSES,
    REGISTRY,
    decode,
    encode,
    message_class,
    registry_key,
)
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.schemas.trades import TradeExecuted

__all__ = [
    "MESSAGE_CLASSES",
    "REGISTRY",
    "AccountCommand",
    "AccountEvent",
    "AccountOpened",
    "AlertCancelled",
    "AlertCommand",
    "AlertCondition",
    "AlertCreated",
    "AmendOrder",
    "BarClosed",
    "BarWindow",
    "BestBidAsk",
    "BookLevel",
    "BookSnapshot",
    "BookUpdate",
    "CancelOrder",
    "CancelRequestRejected",
    "CashDeposited",
    "CashSettled",
    "CashWithdrawn",
    "CloseSession",
    "Currency",
    "CustodyTransferredIn",
    "DeadLetter",
    "DecimalStr",
    "DepositCash",
    "FillSettled",
    "FundsHeld",
    "FundsReleased",
    "HoldReleaseReason",
    "LedgerEvent",
    "Message",
    "NonNegativeDecimal",
    "Notification",
    "NotificationChannel",
    "NotificationUndelivered",
    "OpenAccount",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderCommand",
    "OrderDuplicateIgnored",
    "OrderEvent",
    "OrderExpired",
    "OrderFilled",
    "OrderPartiallyFilled",
    "OrderRejected",
    "OrderStatus",
    "OrderSubmitted",
    "OrderType",
    "OrderUpdateNotification",
    "PayloadEncoding",
    "PlaceOrder",
    "PositiveDecimal",
    "PriceAlertTriggered",
    "Quote",
    "RequestAccepted",
    "RequestAmend",
    "RequestCancel",
    "RequestOrder",
    "RequestRefused",
    "SchemaError",
    "SetReferencePrice",
    "SettleDue",
    "SharesHeld",
    "SharesReleased",
    "Side",
    "Symbol",
    "TimeInForce",
    "Trade",
    "TradeExecuted",
    "TransferCustody",
    "UnknownMessageError",
    "UtcDatetime",
    "Venue",
    "WithdrawCash",
    "decode",
    "encode",
    "message_class",
    "registry_key",
]
