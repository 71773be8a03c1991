"""Wire conventions shared by every message family.

Every payload on a brokerflow topic is a JSON object with camelCase keys, a ``type`` naming the
message (events in the past tense, commands in the imperative) and a ``schemaVersion``. Prices and
quantities travel as decimal strings, never floats; times are ISO 8601 in UTC with a ``Z``.
Models are frozen: a message, once built, is a fact.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from brokerflow.errors import SchemaError

__all__ = [
    "Currency",
    "DecimalStr",
    "Message",
    "NonNegativeDecimal",
    "PositiveDecimal",
    "Symbol",
    "UtcDatetime",
    "format_decimal",
    "format_utc",
    "invalid_field",
]

#: Digits allowed on each side of the decimal point. Beyond any real price or quantity, and it
#: stops a 14-byte "1e999999999" from becoming a billion-character string when re-encoded.
_MAX_DECIMAL_DIGITS = 40


def format_decimal(value: Decimal) -> str:
    """Plain notation (no exponent), so ``kcat`` output and string comparisons stay readable."""
    return format(value, "f")


def format_utc(value: datetime) -> str:
    """ISO 8601, microseconds, ``Z`` suffix: sortable as text and unambiguous."""
    # isoformat, not strftime("%Y"): glibc writes year 999 as "999", which fromisoformat refuses.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


#: Decimal texts already checked, and their value (prices repeat on every feed); bounded.
_DECIMAL_TEXTS: dict[str, Decimal] = {}


def _to_decimal(value: Any) -> Decimal:
    # Floats are refused: 0.1 + 0.2 is how brokers lose cents. Strings and ints are exact.
    if type(value) is str:
        known = _DECIMAL_TEXTS.get(value)
        if known is not None:
            return known  # immutable, and the same text always gives the same Decimal
        result = _checked_decimal(value)
        if len(_DECIMAL_TEXTS) >= 65536:
            _DECIMAL_TEXTS.clear()
        _DECIMAL_TEXTS[value] = result
        return result
    return _checked_decimal(value)


def _checked_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected a decimal string, got a boolean")
    if isinstance(value, float):
        raise ValueError(f"expected a decimal string such as {format(value, '.8g')!r}, got a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    exponent = int(result.as_tuple().exponent)  # an int for every finite decimal
    if result.adjusted() >= _MAX_DECIMAL_DIGITS or exponent < -_MAX_DECIMAL_DIGITS:
        raise ValueError(
            f"{value!r} is out of range (at most {_MAX_DECIMAL_DIGITS} digits"
            " before or after the point)"
        )
    return result


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"must be greater than zero, got {format_decimal(value)}")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"must not be negative, got {format_decimal(value)}")
    return value


def _to_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        raise ValueError("expected an ISO 8601 timestamp string with a UTC offset, got a number")
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; send UTC, e.g. '2026-01-02T13:30:00Z'")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{value!r} is out of range in UTC") from None


def _symbol(value: str) -> str:
    # isascii: str.isalnum() also accepts "PETR\uff14" (a full-width 4), a second key for one asset.
    bare = value.replace(".", "").replace("-", "")
    if not value or len(value) > 32 or not (bare.isascii() and bare.isalnum()):
        raise ValueError(f"{value!r} is not a symbol (1-32 letters, digits, '.', '-')")
    return value.upper()


def _currency(value: str) -> str:
    code = value.upper()
    if not (3 <= len(code) <= 5 and code.isascii() and code.isalpha()):
        raise ValueError(f"{value!r} is not a currency code (ISO 4217 such as 'BRL', or 'USDT')")
    return code


DecimalStr = Annotated[
    Decimal, BeforeValidator(_to_decimal), PlainSerializer(format_decimal, return_type=str)
]
PositiveDecimal = Annotated[DecimalStr, AfterValidator(_positive)]
NonNegativeDecimal = Annotated[DecimalStr, AfterValidator(_non_negative)]
UtcDatetime = Annotated[
    datetime, BeforeValidator(_to_utc), PlainSerializer(format_utc, return_type=str)
]
Symbol = Annotated[str, AfterValidator(_symbol)]
#: ISO 4217 (``BRL``, ``USD``) or a crypto quote asset (``USDT``); upper-cased on the way in.
Currency = Annotated[str, AfterValidator(_currency)]


def invalid_field(field: str, reason: str, value: Any = None) -> ValidationError:
    """An error for a cross-field check that names its field, for ``raise`` in a model validator.

    A plain ``ValueError`` raised in ``@model_validator`` has an empty location, so
    :class:`SchemaError` could only blame ``<payload>``; pydantic keeps the location of a
    ``ValidationError`` raised there. ``field`` is the Python name; the error uses the wire name.
    """
    return ValidationError.from_exception_data(
        "Message",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                loc=(to_camel(field),),
                input=value,
            )
        ],
    )


class Message(BaseModel):
    """Base of every payload: frozen, strict about unknown keys, camelCase on the wire."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
    )

    #: The message's name; every concrete class narrows it to a Literal of its own name.
    #: Declared here so that it is the first key of every payload.
    type: str
    #: Bumped on any incompatible change; readers dispatch on (type, schemaVersion).
    schema_version: Literal[1] = 1

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> Self:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SchemaError.from_validation(cls.__name__, exc) from None
