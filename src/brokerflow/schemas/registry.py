"""Every message class, keyed by what its payload says it is: ``(type, schemaVersion)``.

A consumer that reads a topic does not need to know in advance what is on it::

    message = decode(record.value)      # PlaceOrder, OrderFilled, BarClosed, DeadLetter...
    producer.send(topic, encode(message))

``decode`` raises :class:`UnknownMessageError` for a pair it does not know (naming ``type`` or
``schemaVersion``) and :class:`SchemaError` for a payload that does not match its class (naming
the field); both carry what a :class:`DeadLetter` needs. A new message class goes in
``MESSAGE_CLASSES``, and a unit test fails until it does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pydantic import ValidationError

from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.schemas.accounts import (
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
from brokerflow.schemas.alerts import AlertCancelled, AlertCreated
from brokerflow.schemas.base import Message
from brokerflow.schemas.book import BookSnapshot, BookUpdate
from brokerflow.schemas.deadletter import DeadLetter
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
from brokerflow.schemas.market import BestBidAsk, Quote, Trade
from brokerflow.schemas.notifications import (
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
    OrderDuplicateIgnored,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
    PlaceOrder,
    SetReferencePrice,
)
from brokerflow.schemas.stats import BarClosed
from brokerflow.schemas.trades import TradeExecuted

__all__ = ["MESSAGE_CLASSES", "REGISTRY", "decode", "encode", "message_class", "registry_key"]

MESSAGE_CLASSES: Final[tuple[type[Message], ...]] = (
    # orders: commands, then events
    PlaceOrder,
    CancelOrder,
    AmendOrder,
    CloseSession,
    SetReferencePrice,
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderPartiallyFilled,
    OrderFilled,
    OrderCancelled,
    OrderExpired,
    OrderAmended,
    OrderDuplicateIgnored,
    # trades
    TradeExecuted,
    # market data
    Trade,
    BestBidAsk,
    Quote,
    # the exchange's book
    BookSnapshot,
    BookUpdate,
    # stats
    BarClosed,
    # ledger
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
    # account requests and decisions
    OpenAccount,
    DepositCash,
    WithdrawCash,
    TransferCustody,
    RequestOrder,
    RequestCancel,
    RequestAmend,
    SettleDue,
    RequestAccepted,
    RequestRefused,
    CancelRequestRejected,
    # notifications
    OrderUpdateNotification,
    PriceAlertTriggered,
    NotificationUndelivered,
    # price alerts
    AlertCreated,
    AlertCancelled,
    # dead letters
    DeadLetter,
)

#: What :func:`decode` tells the user when it cannot tell which message a payload is.
_ANY_MESSAGE = "message"


def registry_key(cls: type[Message]) -> tuple[str, int]:
    """``(type, schemaVersion)`` as the class writes them: the defaults of its two literals."""
    type_name = cls.model_fields["type"].default if "type" in cls.model_fields else None
    version = cls.model_fields["schema_version"].default
    if not isinstance(type_name, str) or not isinstance(version, int):
        raise TypeError(f"{cls.__name__} needs a `type` literal and a `schema_version` literal")
    return type_name, version


def _build_registry() -> Mapping[tuple[str, int], type[Message]]:
    registry: dict[tuple[str, int], type[Message]] = {}
    for cls in MESSAGE_CLASSES:
        key = registry_key(cls)
        if key in registry:
            raise TypeError(f"{cls.__name__} and {registry[key].__name__} both claim {key}")
        registry[key] = cls
    return MappingProxyType(registry)


REGISTRY: Final[Mapping[tuple[str, int], type[Message]]] = _build_registry()
_VERSIONS_BY_TYPE: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        type_name: tuple(sorted(v for t, v in REGISTRY if t == type_name))
        for type_name, _ in REGISTRY
    }
)
_REGISTERED: Final[frozenset[type[Message]]] = frozenset(MESSAGE_CLASSES)


def message_class(type_name: str, schema_version: int) -> type[Message]:
    """The class for a payload's ``type`` and ``schemaVersion``, or :class:`UnknownMessageError`."""
    cls = REGISTRY.get((type_name, schema_version))
    if cls is not None:
        return cls
    known = _VERSIONS_BY_TYPE.get(type_name)
    if known is None:
        raise UnknownMessageError(_ANY_MESSAGE, {"type": f"unknown message type {type_name!r}"})
    raise UnknownMessageError(
        type_name,
        {"schemaVersion": f"no version {schema_version} (known: {', '.join(map(str, known))})"},
    )


def decode(data: bytes | bytearray | str | Mapping[str, Any]) -> Message:
    """Build the message a JSON payload (or an already parsed object) describes."""
    payload = _parse(data)
    type_name = payload.get("type")
    version = payload.get("schemaVersion")
    if type_name is None:
        raise SchemaError(_ANY_MESSAGE, {"type": "missing: every payload names its message"})
    if not isinstance(type_name, str):
        raise SchemaError(_ANY_MESSAGE, {"type": f"expected a string, got {type_name!r}"})
    if version is None:
        raise SchemaError(type_name, {"schemaVersion": "missing: every payload has a version"})
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError(type_name, {"schemaVersion": f"expected an integer, got {version!r}"})
    cls = message_class(type_name, version)
    try:
        return cls.model_validate(payload)
    except ValidationError as exc:
        raise SchemaError.from_validation(cls.__name__, exc) from None


def encode(message: Message) -> bytes:
    """The message's JSON payload; refuses a class :func:`decode` could not read back."""
    if type(message) not in _REGISTERED:
        raise UnknownMessageError(
            type(message).__name__, {"type": "is not in brokerflow.schemas.registry"}
        )
    return message.to_json_bytes()


def _parse(data: bytes | bytearray | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        parsed = json.loads(data)
    except UnicodeDecodeError:
        raise SchemaError(_ANY_MESSAGE, {"<payload>": "is not UTF-8 text"}) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise SchemaError(_ANY_MESSAGE, {"<payload>": f"is not valid JSON ({exc})"}) from None
    if not isinstance(parsed, dict):
        raise SchemaError(
            _ANY_MESSAGE, {"<payload>": f"expected a JSON object, got {type(parsed).__name__}"}
        )
    return parsed
