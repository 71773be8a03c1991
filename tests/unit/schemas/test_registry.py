"""The registry: it covers every message class, dispatches, and every example obeys the rules."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import pytest

import brokerflow.schemas
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.schemas import (
    MESSAGE_CLASSES,
    REGISTRY,
    Message,
    PlaceOrder,
    decode,
    encode,
    message_class,
    registry_key,
)
from brokerflow.schemas.examples import EXAMPLES, PLACE_ORDER

from .support import DROP, changed, rejection, wire

CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
UTC_Z_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?$")


def _public_message_subclasses() -> set[type[Message]]:
    """Every public subclass of Message in any module of brokerflow.schemas, imported or not."""
    for module in pkgutil.iter_modules(brokerflow.schemas.__path__):
        importlib.import_module(f"brokerflow.schemas.{module.name}")
    found: set[type[Message]] = set()
    pending = [Message]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            in_schemas = subclass.__module__.startswith("brokerflow.schemas.")
            if in_schemas and not subclass.__name__.startswith("_"):
                found.add(subclass)
    return found


def _example_id(example: Message) -> str:
    return type(example).__name__


# --- coverage --------------------------------------------------------------------------------


def test_registry_covers_every_public_message_class_in_the_package() -> None:
    assert _public_message_subclasses() == set(REGISTRY.values())


def test_registry_holds_exactly_these_type_version_pairs() -> None:
    assert sorted(REGISTRY) == sorted(
        (name, 1)
        for name in [
            "PlaceOrder",
            "CancelOrder",
            "AmendOrder",
            "CloseSession",
            "SetReferencePrice",
            "OrderSubmitted",
            "OrderAccepted",
            "OrderRejected",
            "OrderPartiallyFilled",
            "OrderFilled",
            "OrderCancelled",
            "OrderExpired",
            "OrderAmended",
            "OrderDuplicateIgnored",
            "TradeExecuted",
            "Trade",
            "BestBidAsk",
            "Quote",
            "BookSnapshot",
            "BookUpdate",
            "BarClosed",
            "AccountOpened",
            "CashDeposited",
            "CashWithdrawn",
            "FundsHeld",
            "FundsReleased",
            "SharesHeld",
            "SharesReleased",
            "FillSettled",
            "CustodyTransferredIn",
            "CashSettled",
            "OpenAccount",
            "DepositCash",
            "WithdrawCash",
            "TransferCustody",
            "RequestOrder",
            "RequestCancel",
            "RequestAmend",
            "SettleDue",
            "RequestAccepted",
            "RequestRefused",
            "CancelRequestRejected",
            "OrderUpdate",
            "PriceAlertTriggered",
            "NotificationUndelivered",
            "AlertCreated",
            "AlertCancelled",
            "DeadLetter",
        ]
    )


def test_type_literal_is_the_class_name_except_the_seed_named_order_update() -> None:
    renamed = {
        type_name: cls.__name__
        for (type_name, _), cls in REGISTRY.items()
        if type_name != cls.__name__
    }
    assert renamed == {"OrderUpdate": "OrderUpdateNotification"}


def test_examples_hold_one_instance_of_every_registered_class() -> None:
    assert sorted(type(example).__name__ for example in EXAMPLES) == sorted(
        cls.__name__ for cls in MESSAGE_CLASSES
    )


def test_package_exports_every_registered_class() -> None:
    exported = set(brokerflow.schemas.__all__)
    assert {cls.__name__ for cls in MESSAGE_CLASSES} <= exported
    assert {"decode", "encode", "message_class", "SchemaError", "UnknownMessageError"} <= exported
    for name in exported:
        assert hasattr(brokerflow.schemas, name), name


# --- every example ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_example_round_trips_through_encode_and_decode(example: Message) -> None:
    data = encode(example)
    assert isinstance(data, bytes)
    for form in (data, data.decode(), bytearray(data), json.loads(data)):
        decoded = decode(form)
        assert type(decoded) is type(example)
        assert decoded == example
    assert encode(decode(data)) == data


def _walk_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [key for key, item in value.items() for key in [key, *_walk_keys(item)]]
    if isinstance(value, list):
        return [key for item in value for key in _walk_keys(item)]
    return []


def _walk_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _walk_values(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _walk_values(item)]
    return [value]


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_example_wire_form_follows_the_conventions(example: Message) -> None:
    payload = wire(example)
    assert payload["type"] == registry_key(type(example))[0]
    assert payload["schemaVersion"] == 1
    assert all(CAMEL_CASE.match(key) for key in _walk_keys(payload)), payload.keys()
    for name, field in type(example).model_fields.items():
        value, sent = getattr(example, name), payload[field.alias or name]
        if isinstance(value, Decimal):
            assert isinstance(sent, str), name
            assert DECIMAL_TEXT.match(sent), (name, sent)
            assert Decimal(sent) == value
        if isinstance(value, datetime):
            assert isinstance(sent, str), name
            assert UTC_Z_TIME.match(sent), (name, sent)
    assert not [value for value in _walk_values(payload) if isinstance(value, float)]


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_unknown_field_is_rejected_by_name(example: Message) -> None:
    error = rejection(changed(example, surpriseField="hello"))
    assert error.fields == ["surpriseField"]


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_missing_event_time_is_rejected_by_name(example: Message) -> None:
    assert rejection(changed(example, eventTime=DROP)).fields == ["eventTime"]


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_naive_event_time_is_rejected_by_name(example: Message) -> None:
    error = rejection(changed(example, eventTime="2026-01-02T13:30:00"))
    assert error.fields == ["eventTime"]
    assert "no time zone" in str(error)


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_epoch_number_event_time_is_rejected_by_name(example: Message) -> None:
    assert rejection(changed(example, eventTime=1767360600)).fields == ["eventTime"]


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_unknown_schema_version_is_an_unknown_message(example: Message) -> None:
    error = rejection(changed(example, schemaVersion=2), UnknownMessageError)
    assert error.fields == ["schemaVersion"]
    assert "known: 1" in str(error)


# --- dispatch --------------------------------------------------------------------------------


def test_message_class_finds_the_class_for_a_pair() -> None:
    assert message_class("PlaceOrder", 1) is PlaceOrder


def test_unknown_type_is_an_unknown_message_naming_type() -> None:
    error = rejection(changed(PLACE_ORDER, type="PlaceOrders"), UnknownMessageError)
    assert isinstance(error, SchemaError)
    assert error.fields == ["type"]
    assert "'PlaceOrders'" in str(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": DROP}, "type"),
        ({"type": 7}, "type"),
        ({"schemaVersion": DROP}, "schemaVersion"),
        ({"schemaVersion": "1"}, "schemaVersion"),
        ({"schemaVersion": True}, "schemaVersion"),
        ({"schemaVersion": 1.0}, "schemaVersion"),
    ],
)
def test_malformed_type_or_version_is_a_schema_error_not_unknown(
    changes: dict[str, Any], field: str
) -> None:
    error = rejection(changed(PLACE_ORDER, **changes))
    assert not isinstance(error, UnknownMessageError)
    assert error.fields == [field]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b'{"type": "PlaceOrder",', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "JSON"),
        (b'[{"type": "PlaceOrder"}]', "expected a JSON object, got list"),
        (b'"PlaceOrder"', "expected a JSON object, got str"),
        (b"null", "expected a JSON object, got NoneType"),
    ],
)
def test_payload_that_is_not_a_json_object_is_a_schema_error(data: bytes, why: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode(data)
    assert info.value.fields == ["<payload>"]
    assert why in str(info.value)


def test_invalid_utf8_is_a_schema_error() -> None:
    with pytest.raises(SchemaError) as info:
        decode(b'{"type": "Trade\xff"}')
    assert info.value.fields == ["<payload>"]


def test_several_problems_are_all_named() -> None:
    error = rejection(changed(PLACE_ORDER, quantity=-5, symbol=DROP, price=38.12))
    assert sorted(error.fields) == ["price", "quantity", "symbol"]
    assert error.model == "PlaceOrder"


def test_encode_refuses_a_class_decode_cannot_read_back() -> None:
    class Unregistered(Message):
        type: Literal["Unregistered"] = "Unregistered"

    with pytest.raises(UnknownMessageError) as info:
        encode(Unregistered())
    assert info.value.fields == ["type"]


def test_decode_does_not_accept_snake_case_version_key() -> None:
    payload = changed(PLACE_ORDER, schemaVersion=DROP)
    payload["schema_version"] = 1
    assert rejection(payload).fields == ["schemaVersion"]
