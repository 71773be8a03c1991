"""Per-symbol trading rules and the unit conversions they imply.

The core never sees a ``Decimal`` price: the edge turns a price into an integer number of ticks
and a quantity into an integer number of lots with :meth:`SymbolRules.price_to_ticks` and
:meth:`SymbolRules.quantity_to_lots`, and back with :meth:`SymbolRules.ticks_to_price` and
:meth:`SymbolRules.lots_to_quantity`. A value that is not a whole number of ticks or lots is what
the exchange rejects with ``TICK_SIZE`` or ``LOT_SIZE``.

>>> rules = SymbolRules(tick_size=Decimal("0.05"), lot_size=Decimal("100"))
>>> rules.price_to_ticks(Decimal("38.55")), rules.price_to_ticks(Decimal("38.52"))
(771, None)
>>> rules.quantity_to_lots(Decimal("300")), rules.lots_to_quantity(3)
(3, Decimal('300'))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any

from brokerflow.errors import ConfigError

__all__ = [
    "DEFAULT_RULES",
    "MAX_LOTS",
    "MAX_TICKS",
    "SelfTradePrevention",
    "SymbolRules",
    "rules_from_wire",
]

#: Upper bounds the core accepts. Far beyond any real instrument; they keep the integer maths
#: (and a market order's "no limit" sentinel) well defined.
MAX_TICKS = (1 << 62) - 1
MAX_LOTS = (1 << 62) - 1


class SelfTradePrevention(StrEnum):
    """What happens when an incoming order would trade with a resting order of the same account."""

    OFF = "OFF"  # let it trade
    CANCEL_NEWEST = "CANCEL_NEWEST"  # cancel the incoming order's remainder (reason SELF_TRADE)
    CANCEL_OLDEST = "CANCEL_OLDEST"  # cancel the resting order (reason SELF_TRADE), keep matching


def _decimal_setting(name: str, value: Any) -> Decimal:
    # Floats are refused for the same reason as on the wire: 0.1 is not 0.1.
    if isinstance(value, bool | float):
        raise ConfigError(f"{name}: expected a decimal string such as '0.01', got {value!r}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{name}: {value!r} is not a decimal number") from None
    if not result.is_finite() or result <= 0:
        raise ConfigError(f"{name}: must be a positive decimal, got {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Tick size, lot size, price band and self-trade prevention for one symbol.

    ``price_band_pct`` is a percentage (``Decimal("10")`` is 10 %): a LIMIT order priced more than
    that away from the reference price is rejected with ``PRICE_BAND``. ``None`` means no band.
    """

    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("1")
    price_band_pct: Decimal | None = None
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.OFF

    def __post_init__(self) -> None:
        # Normalise at construction so a bad rules file fails loudly, once, with the field name.
        object.__setattr__(self, "tick_size", _decimal_setting("tickSize", self.tick_size))
        object.__setattr__(self, "lot_size", _decimal_setting("lotSize", self.lot_size))
        if self.price_band_pct is not None:
            band = _decimal_setting("priceBandPct", self.price_band_pct)
            object.__setattr__(self, "price_band_pct", band)
        try:
            stp = SelfTradePrevention(self.self_trade_prevention)
        except ValueError:
            choices = ", ".join(member.value for member in SelfTradePrevention)
            raise ConfigError(
                f"selfTradePrevention: {self.self_trade_prevention!r} is not one of {choices}"
            ) from None
        object.__setattr__(self, "self_trade_prevention", stp)

    def price_to_ticks(self, price: Decimal) -> int | None:
        """Whole ticks in ``price``; ``None`` when off the tick grid (or absurdly large)."""
        return _whole_units(price, self.tick_size, MAX_TICKS)

    def quantity_to_lots(self, quantity: Decimal) -> int | None:
        """Whole lots in ``quantity``, or ``None`` when it is not a multiple of the lot size."""
        return _whole_units(quantity, self.lot_size, MAX_LOTS)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return ticks * self.tick_size

    def lots_to_quantity(self, lots: int) -> Decimal:
        return lots * self.lot_size

    def price_in_ticks(self, price: Decimal) -> int | Fraction:
        """Exact position of any price on the tick axis (a fraction when it is off the grid).

        Reference prices come from the market-data pipeline and need not sit on the grid.
        """
        # Integer ratios, not Fraction arithmetic: a Fraction costs a Python-level __new__ each,
        # and a reference price arrives with every market-data tick.
        price_numerator, price_denominator = price.as_integer_ratio()
        tick_numerator, tick_denominator = self.tick_size.as_integer_ratio()
        numerator = price_numerator * tick_denominator
        denominator = price_denominator * tick_numerator
        if numerator % denominator == 0:
            return numerator // denominator
        return Fraction(numerator, denominator)

    def to_wire(self) -> dict[str, Any]:
        """The camelCase shape of a ``--rules`` file entry."""
        return {
            "tickSize": format(self.tick_size, "f"),
            "lotSize": format(self.lot_size, "f"),
            "priceBandPct": (
                None if self.price_band_pct is None else format(self.price_band_pct, "f")
            ),
            "selfTradePrevention": self.self_trade_prevention.value,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SymbolRules:
        """Build from the camelCase shape; absent keys take the defaults, unknown keys fail."""
        known = {"tickSize", "lotSize", "priceBandPct", "selfTradePrevention"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        defaults = cls()
        return cls(
            tick_size=data.get("tickSize", defaults.tick_size),
            lot_size=data.get("lotSize", defaults.lot_size),
            price_band_pct=data.get("priceBandPct"),
            self_trade_prevention=data.get("selfTradePrevention", defaults.self_trade_prevention),
        )


def _whole_units(value: Decimal, unit: Decimal, limit: int) -> int | None:
    try:
        whole, rest = divmod(value, unit)
    except InvalidOperation:  # the quotient needs more digits than the context holds
        return None
    if rest or not value.is_finite():
        return None
    units = int(whole)
    return units if -limit <= units <= limit else None


#: Rules for any symbol nobody configured: tick 0.01, lot 1, no band, self-trade prevention off.
DEFAULT_RULES = SymbolRules()


def rules_from_wire(data: Mapping[str, Any]) -> dict[str, SymbolRules]:
    """Parse a ``--rules`` mapping ``{symbol: {tickSize, lotSize, ...}}``; symbols upper-cased."""
    if not isinstance(data, Mapping):
        raise ConfigError("rules: expected a JSON object mapping symbol -> rules")
    parsed: dict[str, SymbolRules] = {}
    for symbol, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"rules for {symbol!r}: expected a JSON object")
        try:
            parsed[str(symbol).upper()] = SymbolRules.from_wire(entry)
        except ConfigError as exc:
            raise ConfigError(f"rules for {symbol!r}: {exc}") from None
    return parsed
