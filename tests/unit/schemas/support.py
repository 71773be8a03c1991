"""Helpers shared by the schema tests: wire dicts in, SchemaErrors out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from brokerflow.errors import SchemaError
from brokerflow.schemas import Message, decode, encode

#: Put in ``changes`` to drop a key from the payload.
DROP = object()


def wire(message: Message) -> dict[str, Any]:
    """The message as a consumer sees it: the JSON object ``encode`` produced."""
    return json.loads(encode(message))


def changed(message: Message, /, **changes: Any) -> dict[str, Any]:
    """The message's wire dict with keys (camelCase) replaced, added, or dropped with ``DROP``."""
    payload = wire(message)
    for key, value in changes.items():
        if value is DROP:
            del payload[key]
        else:
            payload[key] = value
    return payload


def rejection(payload: dict[str, Any], error: type[SchemaError] = SchemaError) -> SchemaError:
    """Decode the payload as bytes, as a Kafka consumer would, and return the error raised."""
    with pytest.raises(error) as info:
        decode(json.dumps(payload).encode())
    return info.value
