"""The broker's rules: fee rates, the market-buy collar, the session, and the checks an order
must pass before any money moves (pure; settings are read once, at the edge).

>>> from decimal import Decimal
>>> from brokerflow.settings import Settings
>>> rules = BrokerRules.from_settings(Settings())
>>> fee(rules, rules.instruments["PETR4"], Decimal("3852.00"))   # 0.03 % of 3852.00 = 1.1556
Decimal('1.16')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from brokerflow.broker.calendar import is_business_day
from brokerflow.instruments import Instrument, InstrumentCatalog, load_instruments
from brokerflow.matching.exchange import lot_size_detail, tick_size_detail
from brokerflow.schemas.orders import OrderType, TimeInForce

if TYPE_CHECKING:
    from brokerflow.schemas.accounts import RequestOrder
    from brokerflow.settings import Settings

__all__ = [
    "BrokerRules",
    "FeeRates",
    "Refusal",
    "RefusalCode",
    "check_order",
    "fee",
    "quantum",
    "round_up",
    "session_open",
]

_HUNDRED: Final = Decimal(100)


class RefusalCode(StrEnum):
    """``RequestRefused.code``: machine-readable, mapped to HTTP by the API."""

    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"  # 404
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"  # 409
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"  # 422
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"  # 422, a currency no instrument trades in
    AMOUNT_PRECISION = "AMOUNT_PRECISION"  # 422, more decimals than the currency has
    TICK_SIZE = "TICK_SIZE"  # 422
    LOT_SIZE = "LOT_SIZE"  # 422
    MARKET_CLOSED = "MARKET_CLOSED"  # 403
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"  # 403
    INSUFFICIENT_SHARES = "INSUFFICIENT_SHARES"  # 403
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # 403, a withdrawal beyond the withdrawable cash
    NO_MARKET_PRICE = "NO_MARKET_PRICE"  # 403
    ORDER_ID_IN_USE = "ORDER_ID_IN_USE"  # 409
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # 404
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"  # 409, e.g. amending a MARKET order (it never rests)
    CANCEL_PENDING = "CANCEL_PENDING"  # 409
    AMEND_PENDING = "AMEND_PENDING"  # 409, one amend at a time per order
    AMEND_BELOW_FILLED = "AMEND_BELOW_FILLED"  # 422, as the exchange would answer


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request cannot take effect: ``code`` for machines, ``message`` for people."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class FeeRates:
    """Fees per side, as percentages of the notional (``Decimal("0.03")`` is 0.03 %)."""

    b3_trading_pct: Decimal = Decimal("0.005")
    b3_settlement_pct: Decimal = Decimal("0.025")
    crypto_pct: Decimal = Decimal("0.1")

    @classmethod
    def from_settings(cls, settings: Settings) -> FeeRates:
        return cls(
            b3_trading_pct=settings.broker_b3_trading_fee_pct,
            b3_settlement_pct=settings.broker_b3_settlement_fee_pct,
            crypto_pct=settings.broker_crypto_fee_pct,
        )

    def pct(self, schedule: str) -> Decimal:
        """The total rate of a fee schedule (``B3``: trading + settlement; ``CRYPTO``)."""
        if schedule == "B3":
            return self.b3_trading_pct + self.b3_settlement_pct
        if schedule == "CRYPTO":
            return self.crypto_pct
        raise ValueError(f"unknown fee schedule {schedule!r} (known: B3, CRYPTO)")


@dataclass(frozen=True, slots=True)
class BrokerRules:
    """Everything the broker's decisions depend on besides the account and the request."""

    instruments: InstrumentCatalog
    fees: FeeRates = FeeRates()
    market_buy_collar_pct: Decimal = Decimal("5")
    session_open: time = time(10, 0)
    session_close: time = time(17, 0)
    session_tz: str = "America/Sao_Paulo"
    #: How long a closed order's id stays refused (ORDER_ID_IN_USE): the API sends a PENDING
    #: order again on a retry with its idempotency key, so as long as a key lives.
    closed_order_memory: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerRules:
        return cls(
            instruments=load_instruments(settings),
            fees=FeeRates.from_settings(settings),
            market_buy_collar_pct=settings.broker_market_buy_collar_pct,
            session_open=settings.exchange_session_open,
            session_close=settings.exchange_session_close,
            session_tz=settings.exchange_session_timezone,
            closed_order_memory=timedelta(seconds=settings.api_idempotency_ttl_s),
        )

    def decimals(self, currency: str) -> int:
        return self.instruments.currency_decimals(currency)


@lru_cache(maxsize=32)
def quantum(decimals: int) -> Decimal:
    """``Decimal("0.01")`` for 2: the smallest amount of a currency with that many places."""
    return Decimal(1).scaleb(-decimals)


def round_up(amount: Decimal, decimals: int) -> Decimal:
    """``amount`` rounded towards +infinity to ``decimals`` places (holds never fall short)."""
    return amount.quantize(quantum(decimals), rounding=ROUND_CEILING)


def fee(rules: BrokerRules, instrument: Instrument, notional: Decimal) -> Decimal:
    """The fee of one side on ``notional`` (quantity x price), rounded half-even to the
    currency's decimal places."""
    raw = notional * rules.fees.pct(instrument.fee_schedule) / _HUNDRED
    decimals = rules.decimals(instrument.currency)
    return raw.quantize(quantum(decimals), rounding=ROUND_HALF_EVEN)


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def session_open(rules: BrokerRules, instrument: Instrument, moment: datetime) -> bool:
    """Whether the instrument's session is open at ``moment`` (an aware instant).

    ``24x7`` is always open; ``B3`` from ``session_open`` (inclusive) to ``session_close``
    (exclusive), local time, on B3 business days.
    """
    if instrument.session != "B3":
        return True
    local = moment.astimezone(_zone(rules.session_tz))
    if not is_business_day(local.date()):
        return False
    return rules.session_open <= local.time().replace(tzinfo=None) < rules.session_close


def check_order(rules: BrokerRules, request: RequestOrder) -> Refusal | None:
    """What the order itself breaks, whatever the account holds: the symbol, the tick and lot
    grid, and (for a DAY order on a B3 instrument) the session. ``None`` when it passes.

    The API runs it before publishing (a quick 422/403), the accounts agent again when it
    decides; the texts are the exchange's own, so a user sees one wording.
    """
    instrument = rules.instruments.get(request.symbol)
    if instrument is None:
        return Refusal(
            RefusalCode.UNKNOWN_SYMBOL,
            f"{request.symbol} is not traded here; see /api/v1/assets for the instruments",
        )
    symbol_rules = instrument.rules()
    price = request.price if request.order_type is OrderType.LIMIT else None
    if price is not None and symbol_rules.price_to_ticks(price) is None:
        return Refusal(RefusalCode.TICK_SIZE, tick_size_detail(symbol_rules, price))
    if symbol_rules.quantity_to_lots(request.quantity) is None:
        return Refusal(RefusalCode.LOT_SIZE, lot_size_detail(symbol_rules, request.quantity))
    if request.time_in_force is TimeInForce.DAY and not session_open(
        rules, instrument, request.event_time
    ):
        return Refusal(
            RefusalCode.MARKET_CLOSED,
            f"{instrument.symbol} trades {rules.session_open:%H:%M}-{rules.session_close:%H:%M}"
            f" {rules.session_tz} on B3 business days; a DAY order is refused outside the"
            " session (send GTC to rest until the open)",
        )
    return None
