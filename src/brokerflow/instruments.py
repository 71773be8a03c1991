"""The instrument catalog: the one list of what trades here, read by the exchange and the broker.

Each instrument says where it trades, in which currency, on what price and quantity grid, in
which session, how many business days its cash takes to settle and which fee schedule applies.
The exchange takes its matching rules from it (:meth:`Instrument.rules`); the broker its fees,
holds and settlement dates; the API lists it. One JSON file, bundled as
``brokerflow/data/instruments.json`` and replaceable with ``INSTRUMENTS_PATH``::

    {"currencies": {"BRL": {"decimals": 2}, "USDT": {"decimals": 8}},
     "instruments": {"PETR4": {"venue": "B3", "currency": "BRL", "tickSize": "0.01",
                               "lotSize": "1", "session": "B3", "settlementDays": 2,
                               "feeSchedule": "B3"}}}

``priceBandPct`` is optional (no band when absent). Decimals are strings (JSON numbers are read
as exact decimals too, never as floats). A bad file raises :class:`~brokerflow.errors.ConfigError`
naming the file, the symbol and the field.

>>> catalog = InstrumentCatalog.from_wire(
...     {"currencies": {"BRL": {"decimals": 2}},
...      "instruments": {"PETR4": {"venue": "B3", "currency": "BRL", "tickSize": "0.01",
...                                "lotSize": "1", "session": "B3", "settlementDays": 2,
...                                "feeSchedule": "B3"}}})
>>> catalog.get("petr4").rules().tick_size, catalog.currency_decimals("BRL")
(Decimal('0.01'), 2)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from brokerflow.errors import ConfigError
from brokerflow.matching import SymbolRules

if TYPE_CHECKING:
    from brokerflow.settings import Settings

__all__ = [
    "BUNDLED_INSTRUMENTS",
    "FEE_SCHEDULES",
    "SESSIONS",
    "VENUES",
    "Instrument",
    "InstrumentCatalog",
    "load_instruments",
    "read_instruments",
]

#: The package resource read when ``INSTRUMENTS_PATH`` is empty.
BUNDLED_INSTRUMENTS: Final = "instruments.json"
VENUES: Final = frozenset({"B3", "BINANCE"})
#: ``B3``: business days between the session open and close (Sao Paulo); ``24x7``: always open.
SESSIONS: Final = frozenset({"B3", "24x7"})
FEE_SCHEDULES: Final = frozenset({"B3", "CRYPTO"})
#: Decimal places a currency may carry; beyond any real currency or token.
_MAX_DECIMALS = 18
_KEYS: Final = frozenset(
    {
        "venue",
        "currency",
        "tickSize",
        "lotSize",
        "session",
        "settlementDays",
        "feeSchedule",
        "priceBandPct",
    }
)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol and everything the exchange and the broker need to know about it."""

    symbol: str
    venue: str  # "B3" | "BINANCE"
    currency: str  # "BRL" | "USDT"
    tick_size: Decimal
    lot_size: Decimal
    session: str  # "B3" | "24x7"
    settlement_days: int  # business days: 2 for B3 stocks, 0 for crypto
    fee_schedule: str  # "B3" | "CRYPTO"
    price_band_pct: Decimal | None = None

    def rules(self) -> SymbolRules:
        """The exchange's matching rules for this symbol (tick, lot, price band)."""
        return SymbolRules(
            tick_size=self.tick_size, lot_size=self.lot_size, price_band_pct=self.price_band_pct
        )

    def to_wire(self) -> dict[str, Any]:
        """The catalog file's camelCase entry (without the symbol, which is its key)."""
        entry: dict[str, Any] = {
            "venue": self.venue,
            "currency": self.currency,
            "tickSize": format(self.tick_size, "f"),
            "lotSize": format(self.lot_size, "f"),
            "session": self.session,
            "settlementDays": self.settlement_days,
            "feeSchedule": self.fee_schedule,
        }
        if self.price_band_pct is not None:
            entry["priceBandPct"] = format(self.price_band_pct, "f")
        return entry


class InstrumentCatalog:
    """Instruments by symbol (in file order) and the decimal places of each currency.

    Symbols are upper-cased on the way in and on lookup, as on the wire.
    """

    __slots__ = ("_decimals", "_instruments")

    def __init__(self, instruments: Mapping[str, Instrument], decimals: Mapping[str, int]) -> None:
        self._instruments = {symbol.upper(): item for symbol, item in instruments.items()}
        self._decimals = dict(decimals)
        for item in self._instruments.values():
            if item.currency not in self._decimals:
                raise ConfigError(
                    f"instrument {item.symbol!r}: currency: {item.currency!r} is not in"
                    f" currencies ({', '.join(sorted(self._decimals))})"
                )

    def get(self, symbol: str) -> Instrument | None:
        return self._instruments.get(symbol.upper())

    def __getitem__(self, symbol: str) -> Instrument:
        instrument = self.get(symbol)
        if instrument is None:
            raise KeyError(f"{symbol!r} is not in the instrument catalog")
        return instrument

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol.upper() in self._instruments

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._instruments.values())

    def __len__(self) -> int:
        return len(self._instruments)

    @property
    def symbols(self) -> list[str]:
        return list(self._instruments)

    @property
    def currencies(self) -> list[str]:
        """Every currency of the catalog, in file order."""
        return list(self._decimals)

    def currency_decimals(self, currency: str) -> int:
        """Decimal places of ``currency`` (BRL 2, USDT 8): what fees and P&L round to."""
        try:
            return self._decimals[currency.upper()]
        except KeyError:
            known = ", ".join(self._decimals)
            raise KeyError(f"{currency!r} is not a catalog currency (known: {known})") from None

    def to_wire(self) -> dict[str, Any]:
        return {
            "currencies": {code: {"decimals": places} for code, places in self._decimals.items()},
            "instruments": {item.symbol: item.to_wire() for item in self},
        }

    @classmethod
    def from_wire(cls, data: Any) -> InstrumentCatalog:
        """Parse the file's JSON object; raises ConfigError naming the symbol and the field."""
        if not isinstance(data, Mapping):
            raise ConfigError("expected a JSON object with 'currencies' and 'instruments'")
        unknown = sorted(set(data) - {"currencies", "instruments"})
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}; known: currencies, instruments"
            )
        decimals = _currencies(data.get("currencies"))
        entries = data.get("instruments")
        if not isinstance(entries, Mapping) or not entries:
            raise ConfigError("instruments: expected a non-empty JSON object symbol -> instrument")
        instruments: dict[str, Instrument] = {}
        for symbol, entry in entries.items():
            item = _instrument(str(symbol), entry, decimals)
            if item.symbol in instruments:
                raise ConfigError(f"instrument {symbol!r}: listed twice (symbols ignore case)")
            instruments[item.symbol] = item
        return cls(instruments, decimals)


def _currencies(data: Any) -> dict[str, int]:
    if not isinstance(data, Mapping) or not data:
        raise ConfigError('currencies: expected a JSON object such as {"BRL": {"decimals": 2}}')
    decimals: dict[str, int] = {}
    for code, entry in data.items():
        name = str(code)
        if not (3 <= len(name) <= 5 and name.isascii() and name.isalpha() and name.isupper()):
            raise ConfigError(f"currency {name!r}: not a currency code (3-5 capital letters)")
        if not isinstance(entry, Mapping) or set(entry) != {"decimals"}:
            raise ConfigError(f'currency {name!r}: expected {{"decimals": N}}, got {entry!r}')
        places = entry["decimals"]
        if type(places) is not int or not 0 <= places <= _MAX_DECIMALS:
            raise ConfigError(
                f"currency {name!r}: decimals: expected a whole number 0-{_MAX_DECIMALS},"
                f" got {places!r}"
            )
        decimals[name] = places
    return decimals


def _instrument(symbol: str, entry: Any, decimals: Mapping[str, int]) -> Instrument:
    where = f"instrument {symbol!r}"
    bare = symbol.replace(".", "").replace("-", "")
    if not symbol or len(symbol) > 32 or not (bare.isascii() and bare.isalnum()):
        raise ConfigError(f"{where}: not a symbol (1-32 letters, digits, '.', '-')")
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a JSON object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    missing = sorted(_KEYS - {"priceBandPct"} - set(entry))
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    venue = _choice(where, "venue", entry["venue"], VENUES)
    session = _choice(where, "session", entry["session"], SESSIONS)
    schedule = _choice(where, "feeSchedule", entry["feeSchedule"], FEE_SCHEDULES)
    currency = entry["currency"]
    if currency not in decimals:
        raise ConfigError(
            f"{where}: currency: {currency!r} is not in currencies ({', '.join(decimals)})"
        )
    days = entry["settlementDays"]
    if type(days) is not int or not 0 <= days <= 30:
        raise ConfigError(
            f"{where}: settlementDays: expected a whole number of business days 0-30, got {days!r}"
        )
    band = entry.get("priceBandPct")
    return Instrument(
        symbol=symbol.upper(),
        venue=venue,
        currency=currency,
        tick_size=_positive(where, "tickSize", entry["tickSize"]),
        lot_size=_positive(where, "lotSize", entry["lotSize"]),
        session=session,
        settlement_days=days,
        fee_schedule=schedule,
        price_band_pct=None if band is None else _positive(where, "priceBandPct", band),
    )


def _choice(where: str, field: str, value: Any, choices: frozenset[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {field}: {value!r} is not one of {', '.join(sorted(choices))}")
    return str(value)


def _positive(where: str, field: str, value: Any) -> Decimal:
    # Floats are refused as on the wire; json.load(parse_float=Decimal) gives exact numbers.
    if isinstance(value, bool | float):
        raise ConfigError(
            f"{where}: {field}: expected a decimal string such as '0.01', got {value!r}"
        )
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: {field}: {value!r} is not a decimal number") from None
    if not result.is_finite() or result <= 0:
        raise ConfigError(f"{where}: {field}: must be a positive decimal, got {value!r}")
    return result


def read_instruments(text: str, source: str) -> InstrumentCatalog:
    """Parse a catalog file's text; ``source`` names it in errors."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ConfigError(f"instrument catalog {source}: not JSON ({exc})") from None
    try:
        return InstrumentCatalog.from_wire(data)
    except ConfigError as exc:
        raise ConfigError(f"instrument catalog {source}: {exc}") from None


def load_instruments(settings: Settings) -> InstrumentCatalog:
    """The catalog at ``INSTRUMENTS_PATH``, or the bundled one when it is empty."""
    path = settings.instruments_path
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(
                f"INSTRUMENTS_PATH {path}: cannot be read ({exc.strerror or exc}); fix the path"
                " or leave it empty for the bundled catalog"
            ) from None
        return read_instruments(text, path)
    bundled = resources.files("brokerflow.data").joinpath(BUNDLED_INSTRUMENTS)
    return read_instruments(bundled.read_text(encoding="utf-8"), f"(bundled) {BUNDLED_INSTRUMENTS}")
