"""The one envelope for input we could not use: errors are data, and the stream keeps flowing.

Whatever refuses a record (a consumer decoding a topic, a connector normalizing a vendor frame, a
notification that could not be delivered) publishes a ``DeadLetter`` holding the original bytes
untouched, where they came from and why they were refused. Nothing is re-parsed or re-encoded:
text that is valid UTF-8 is kept as text so ``kcat`` shows it, anything else as base64.

    >>> from datetime import UTC, datetime
    >>> letter = DeadLetter.from_payload(
    ...     source="order-events-v1", reason="SCHEMA_INVALID",
    ...     detail="invalid PlaceOrder: price: expected a decimal string, got a float",
    ...     fields=("price",), payload=b'{"price": 1.5}',
    ...     event_time=datetime(2026, 1, 2, 13, 30, tzinfo=UTC),
    ... )
    >>> letter.payload, letter.payload_encoding.value, letter.raw_payload()
    ('{"price": 1.5}', 'utf-8', b'{"price": 1.5}')
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.schemas.base import Message, UtcDatetime, invalid_field

__all__ = ["DeadLetter", "PayloadEncoding"]

#: ``SCHEMA_INVALID``, ``UNKNOWN_MESSAGE``, ``NOT_JSON``, ``CROSSED_QUOTE``, ``DELIVERY_FAILED``...
ReasonCode = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Z][A-Z0-9_]{0,63}$")
]
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class PayloadEncoding(StrEnum):
    UTF8 = "utf-8"  # the bytes were valid UTF-8 and are kept as that text
    BASE64 = "base64"  # anything else, standard alphabet with padding


def _encode_raw(raw: bytes | str) -> tuple[str, PayloadEncoding]:
    if isinstance(raw, str):
        # Lone surrogates (from a lenient decoder upstream) cannot travel as JSON text.
        raw = raw.encode("utf-8", errors="surrogatepass")
    try:
        return raw.decode("utf-8"), PayloadEncoding.UTF8
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), PayloadEncoding.BASE64


def _decode_raw(text: str, encoding: PayloadEncoding) -> bytes:
    if encoding is PayloadEncoding.UTF8:
        return text.encode("utf-8")
    return base64.b64decode(text, validate=True)


class DeadLetter(Message):
    # The payload and detail are evidence: keep their whitespace exactly as it came.
    model_config = ConfigDict(str_strip_whitespace=False)

    type: Literal["DeadLetter"] = "DeadLetter"
    #: The topic the record was read from, or the connector that refused it (``binance_ws``).
    source: Source
    #: Short and machine-readable, for counting and routing.
    reason: ReasonCode
    #: For a human: what is wrong and with which field.
    detail: str = Field(min_length=1)
    #: The culprit fields' wire names, as :attr:`SchemaError.fields` gives them; may be empty.
    fields: tuple[str, ...] = ()
    payload: str
    payload_encoding: PayloadEncoding
    key: str | None = None
    key_encoding: PayloadEncoding = PayloadEncoding.UTF8
    #: Where the record was in Kafka, when it came from Kafka.
    partition: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    #: When it was dead-lettered.
    event_time: UtcDatetime

    @model_validator(mode="after")
    def _encoded_text_decodes(self) -> DeadLetter:
        for field, text, encoding in (
            ("payload", self.payload, self.payload_encoding),
            ("key", self.key, self.key_encoding),
        ):
            if text is None:
                continue
            try:
                _decode_raw(text, encoding)
            except (binascii.Error, UnicodeEncodeError):
                raise invalid_field(
                    field, f"is not valid {encoding.value} text", text[:40]
                ) from None
        return self

    @classmethod
    def from_payload(
        cls,
        *,
        source: str,
        reason: str,
        detail: str,
        payload: bytes | str,
        event_time: datetime,
        fields: Sequence[str] = (),
        key: bytes | str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> DeadLetter:
        """Wrap the raw record, choosing text or base64 for the payload and key."""
        text, encoding = _encode_raw(payload)
        key_text, key_encoding = (None, PayloadEncoding.UTF8) if key is None else _encode_raw(key)
        return cls(
            source=source,
            reason=reason,
            detail=detail,
            fields=tuple(fields),
            payload=text,
            payload_encoding=encoding,
            key=key_text,
            key_encoding=key_encoding,
            partition=partition,
            offset=offset,
            event_time=event_time,
        )

    @classmethod
    def from_error(
        cls,
        error: SchemaError,
        *,
        source: str,
        payload: bytes | str,
        event_time: datetime,
        key: bytes | str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> DeadLetter:
        """The usual case: :func:`brokerflow.schemas.decode` refused a record."""
        reason = "UNKNOWN_MESSAGE" if isinstance(error, UnknownMessageError) else "SCHEMA_INVALID"
        return cls.from_payload(
            source=source,
            reason=reason,
            detail=str(error),
            fields=error.fields,
            payload=payload,
            event_time=event_time,
            key=key,
            partition=partition,
            offset=offset,
        )

    def raw_payload(self) -> bytes:
        """The refused bytes, exactly as received."""
        return _decode_raw(self.payload, self.payload_encoding)

    def raw_key(self) -> bytes | None:
        return None if self.key is None else _decode_raw(self.key, self.key_encoding)
