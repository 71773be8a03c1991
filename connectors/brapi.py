"""B3 quotes from Brapi's REST API (brapi.dev), polled within a monthly request budget.

Two halves that never mix. :func:`parse_brapi_body` is pure: one response body in, a
:class:`ParseResult` out (one ``Quote`` per entry of ``results``, a ``DeadLetter`` per bad entry),
shared by the live poller and tape replay. :class:`BrapiPoller` is the I/O: ``GET
/api/quote/{tickers}`` with ``Authorization: Bearer <token>`` (omitted without a token: PETR4 and
VALE3 are served without one), typed errors by status code, retries with backoff honouring
``Retry-After``, polls spread over the month's B3 trading hours, and a hard stop when the month's
budget is spent.

A sample body in Brapi's shape. Numbers are JSON floats: we parse them with
``parse_float=Decimal``, so 37.85 stays exactly 37.85. ``regularMarketTime`` is ISO 8601
(``historicalDataPrice[].date``, which we do not read, is UNIX seconds); most fields may be
``null``::

    {"results":[{"currency":"BRL","shortName":"PETROBRAS   PN      N2",
     "longName":"Petróleo Brasileiro S.A. - Petrobras","regularMarketChange":0.45,
     "regularMarketChangePercent":1.2,"regularMarketTime":"2026-04-23T17:07:00.000Z",
     "regularMarketPrice":37.85,"regularMarketDayHigh":38.0,"regularMarketDayRange":"37.2 - 38.0",
     "regularMarketDayLow":37.2,"regularMarketVolume":45678900,"regularMarketPreviousClose":37.4,
     "regularMarketOpen":37.5,"symbol":"PETR4","logourl":"https://icons.brapi.dev/icons/PETR4.svg"}],
     "requestedAt":"2026-04-23T17:07:42.318Z","took":245}

and an error body (status 401, 402, 404, 429 or 5xx; sometimes ``{"error": "<message>"}``)::

    {"error":true,
     "message":"O seu token é inválido, por favor, verifique o seu token em brapi.dev/dashboard"}
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, ClassVar, Self
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from brokerflow.errors import BrokerflowError, ConfigError, SchemaError
from brokerflow.metrics import VENDOR_FETCH_FAILURE, VENDOR_FETCH_SUCCESS
from brokerflow.schemas.market import Quote
from brokerflow.settings import Settings, get_settings

from ._backoff import Backoff, Sleep
from ._frames import (
    DeadLetterReason,
    Frame,
    FrameRejectedError,
    ParseResult,
    from_epoch_seconds,
    utc_now,
)

__all__ = [
    "VENDOR",
    "BrapiAuthError",
    "BrapiBudgetExhaustedError",
    "BrapiError",
    "BrapiPlanLimitError",
    "BrapiPoller",
    "BrapiQuoteWire",
    "BrapiRateLimitedError",
    "BrapiUnavailableError",
    "BrapiUnknownTickerError",
    "RequestBudget",
    "TradingSession",
    "parse_brapi_body",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

#: The ``vendor`` of every frame this module yields and parses.
VENDOR = "brapi"
#: ``DeadLetter.source`` of refused bodies and entries.
SOURCE = "brapi/quote"
VENUE = "BRAPI"


# --- errors -------------------------------------------------------------------------------------
class BrapiError(BrokerflowError):
    """Brapi refused a request. ``status`` is the HTTP status (``None`` for a network error) and
    ``vendor_message`` what Brapi said. ``retryable`` errors are retried by the poller."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        vendor_message: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_message = vendor_message
        #: Seconds the server asked us to wait (``Retry-After``), when it did.
        self.retry_after = retry_after


class BrapiAuthError(BrapiError):
    """401: the token is missing, wrong or expired."""


class BrapiPlanLimitError(BrapiError):
    """402: the plan's limit is reached (Brapi's own monthly count)."""


class BrapiUnknownTickerError(BrapiError):
    """404: Brapi does not know a requested ticker."""


class BrapiRateLimitedError(BrapiError):
    """429 on every attempt: too many requests too fast."""

    retryable = True


class BrapiUnavailableError(BrapiError):
    """5xx or a network failure on every attempt."""

    retryable = True


class BrapiBudgetExhaustedError(BrapiError):
    """Our own monthly request budget (``BRAPI_MONTHLY_REQUEST_BUDGET``) is spent."""


def _vendor_message(body: str) -> str:
    """Brapi's error text from ``{"error": true, "message": ...}`` or ``{"error": "..."}``."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    if isinstance(payload, dict):
        message = payload.get("message")
        if isinstance(message, str) and message:
            return message
        error = payload.get("error")
        if isinstance(error, str) and error:
            return error
    return body.strip()[:200]


def _error_for(
    status: int, body: str, tickers: Sequence[str], retry_after: float | None
) -> BrapiError:
    said = _vendor_message(body) or "no message"
    names = ",".join(tickers)
    if status == 401:
        return BrapiAuthError(
            f"Brapi refused the token (HTTP 401: {said}). Set BRAPI_TOKEN to a valid token from "
            "https://brapi.dev/dashboard, or leave it empty and poll only the tickers Brapi "
            "serves without one (PETR4, VALE3...).",
            status=status,
            vendor_message=said,
        )
    if status == 402:
        return BrapiPlanLimitError(
            f"Brapi says the plan's limit is reached (HTTP 402: {said}). Upgrade the plan, wait "
            "for Brapi's monthly reset, or lower BRAPI_MONTHLY_REQUEST_BUDGET to what the plan "
            "allows.",
            status=status,
            vendor_message=said,
        )
    if status == 404:
        return BrapiUnknownTickerError(
            f"Brapi does not know a ticker in {names} (HTTP 404: {said}). Remove it from "
            "BRAPI_SYMBOLS; B3 tickers look like PETR4, VALE3, ITUB4.",
            status=status,
            vendor_message=said,
        )
    if status == 429:
        return BrapiRateLimitedError(
            f"Brapi rate-limited the request for {names} (HTTP 429: {said}). Poll less often: "
            "raise BRAPI_MIN_POLL_INTERVAL_S.",
            status=status,
            vendor_message=said,
            retry_after=retry_after,
        )
    if status >= 500:
        return BrapiUnavailableError(
            f"Brapi failed the request for {names} (HTTP {status}: {said}); retried with "
            "backoff up to BRAPI_MAX_ATTEMPTS times, then on the next poll.",
            status=status,
            vendor_message=said,
            retry_after=retry_after,
        )
    return BrapiError(
        f"Brapi refused the request for {names} (HTTP {status}: {said}); check BRAPI_BASE_URL "
        "and BRAPI_SYMBOLS.",
        status=status,
        vendor_message=said,
    )


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    >>> from datetime import UTC, datetime
    >>> now = datetime(2026, 4, 23, 13, 31, tzinfo=UTC)
    >>> retry_after_seconds("7", now), retry_after_seconds("Thu, 23 Apr 2026 13:31:30 GMT", now)
    (7.0, 30.0)
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # RFC 9110 dates are GMT
    return max(0.0, (when - now).total_seconds())


# --- the wire schema ----------------------------------------------------------------------------
def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise ValueError(f"expected a JSON number, got {type(value).__name__} {value!r}")


def _market_time(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"expected an ISO 8601 string or UNIX seconds, got {value!r}")


#: A JSON number as ``json.loads(..., parse_float=Decimal)`` gives it: exact, never a float.
JsonNumber = Annotated[Decimal, BeforeValidator(_json_number)]
#: ``regularMarketTime``: ISO 8601 text (UNIX seconds accepted too).
MarketTime = Annotated[str | int, BeforeValidator(_market_time)]


class BrapiQuoteWire(BaseModel):
    """One entry of ``results``; every field but ``symbol`` may be null or missing."""

    # strict: a number must have come through parse_float=Decimal (or be an int), never a float.
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore", alias_generator=to_camel)

    symbol: str
    currency: str | None = None
    regular_market_price: JsonNumber | None = None
    regular_market_time: MarketTime | None = None
    regular_market_day_high: JsonNumber | None = None
    regular_market_day_low: JsonNumber | None = None
    regular_market_open: JsonNumber | None = None
    regular_market_previous_close: JsonNumber | None = None
    regular_market_volume: JsonNumber | None = None
    regular_market_change: JsonNumber | None = None
    regular_market_change_percent: JsonNumber | None = None

    #: Where each ``Quote`` field comes from, to blame Brapi's field in a dead letter.
    WIRE_NAMES: ClassVar[dict[str, str]] = {
        "last_price": "regularMarketPrice",
        "event_time": "regularMarketTime",
        "day_high": "regularMarketDayHigh",
        "day_low": "regularMarketDayLow",
        "day_open": "regularMarketOpen",
        "previous_close": "regularMarketPreviousClose",
        "volume": "regularMarketVolume",
        "change": "regularMarketChange",
        "change_percent": "regularMarketChangePercent",
        "receive_time": "receive_time",
    }

    def to_domain(self, receive_time: datetime) -> Quote:
        if self.regular_market_price is None:
            raise FrameRejectedError(
                DeadLetterReason.INVALID_FIELD,
                f"regularMarketPrice is null: Brapi has no price for {self.symbol}",
                ("regularMarketPrice",),
            )
        if self.regular_market_time is None:
            raise FrameRejectedError(
                DeadLetterReason.INVALID_FIELD,
                f"regularMarketTime is null: no market time for {self.symbol}'s quote",
                ("regularMarketTime",),
            )
        event_time: str | datetime = (
            from_epoch_seconds(self.regular_market_time)
            if isinstance(self.regular_market_time, int)
            else self.regular_market_time
        )
        return Quote(
            venue=VENUE,
            symbol=self.symbol,
            # Brapi quotes B3 listings, all priced in reais; a null currency means BRL.
            currency=self.currency or "BRL",
            last_price=self.regular_market_price,
            day_high=_zero_is_none(self.regular_market_day_high),
            day_low=_zero_is_none(self.regular_market_day_low),
            day_open=_zero_is_none(self.regular_market_open),
            previous_close=_zero_is_none(self.regular_market_previous_close),
            volume=self.regular_market_volume,
            change=self.regular_market_change,
            change_percent=self.regular_market_change_percent,
            event_time=event_time,
            receive_time=receive_time,
        )


def _zero_is_none(value: Decimal | None) -> Decimal | None:
    # Before the day's first trade Brapi reports the day's high, low and open as 0.
    return None if value == 0 else value


# --- parsing (pure) -----------------------------------------------------------------------------
def parse_brapi_body(raw: str, receive_time: datetime) -> ParseResult:
    """Normalize one ``/api/quote`` response body: a ``Quote`` per good entry, a dead letter
    per bad one (or one for the whole body when it is not a quote response at all).

    >>> from datetime import UTC, datetime
    >>> body = ('{"results":[{"symbol":"PETR4","currency":"BRL","regularMarketPrice":37.85,'
    ...         '"regularMarketTime":"2026-04-23T17:07:00.000Z"}],"took":245}')
    >>> result = parse_brapi_body(body, datetime(2026, 4, 23, 17, 7, 42, tzinfo=UTC))
    >>> [(q.symbol, str(q.last_price)) for q in result.records]
    [('PETR4', '37.85')]
    >>> parse_brapi_body('{"error":"Não encontramos a ação XPTO4"}', result.records[0].receive_time
    ...                  ).dead_letters[0].detail
    'Brapi error: Não encontramos a ação XPTO4'
    """
    try:
        results = _results(raw)
    except FrameRejectedError as rejected:
        letter = rejected.to_dead_letter(source=SOURCE, raw=raw, receive_time=receive_time)
        return ParseResult(dead_letters=(letter,))
    records: list[Quote] = []
    letters = []
    for index, entry in enumerate(results):
        try:
            records.append(_quote(entry, f"results.{index}.", receive_time))
        except FrameRejectedError as rejected:
            letters.append(
                rejected.to_dead_letter(source=SOURCE, raw=raw, receive_time=receive_time)
            )
    return ParseResult(records=tuple(records), dead_letters=tuple(letters))


def _results(raw: str) -> list[Any]:
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise FrameRejectedError(DeadLetterReason.NOT_JSON, f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise FrameRejectedError(
            DeadLetterReason.UNKNOWN_EVENT,
            f"expected a JSON object, got {type(body).__name__}",
            ("<payload>",),
        )
    error = body.get("error")
    if error not in (None, False):
        message = body.get("message")
        said = message if isinstance(message, str) and message else error
        raise FrameRejectedError(
            DeadLetterReason.VENDOR_ERROR,
            f"Brapi error: {said}",
            ("message",) if said is message else ("error",),
        )
    results = body.get("results")
    if not isinstance(results, list):
        raise FrameRejectedError(
            DeadLetterReason.INVALID_FIELD,
            f"results: expected a list of quotes, got {type(results).__name__}",
            ("results",),
        )
    return results


def _quote(entry: Any, prefix: str, receive_time: datetime) -> Quote:
    what = "Brapi quote"
    try:
        wire = BrapiQuoteWire.model_validate(entry)
    except ValidationError as exc:
        error = SchemaError.from_validation(what, exc)
        raise FrameRejectedError.from_schema_error(
            error, what=what, wire_names={}, prefix=prefix
        ) from None
    try:
        return wire.to_domain(receive_time)
    except FrameRejectedError as rejected:
        rejected.fields = tuple(f"{prefix}{name}" for name in rejected.fields)
        raise
    except ValidationError as exc:
        error = SchemaError.from_validation(what, exc)
        raise FrameRejectedError.from_schema_error(
            error, what=f"{what} for {wire.symbol}", wire_names=wire.WIRE_NAMES, prefix=prefix
        ) from None


# --- when and how often to poll (pure) ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TradingSession:
    """A daily session in local time on given weekdays (holidays are not modelled).

    >>> from datetime import UTC, datetime
    >>> b3 = TradingSession(time(10), time(17), ZoneInfo("America/Sao_Paulo"))
    >>> b3.is_open(datetime(2026, 4, 23, 13, 0, tzinfo=UTC))  # 10:00 in Sao Paulo
    True
    >>> b3.next_open(datetime(2026, 4, 25, 12, 0, tzinfo=UTC))  # a Saturday
    datetime.datetime(2026, 4, 27, 13, 0, tzinfo=datetime.timezone.utc)
    """

    open: time
    close: time
    timezone: ZoneInfo
    #: ``date.weekday()`` numbers: Monday is 0.
    weekdays: frozenset[int] = frozenset(range(5))

    def __post_init__(self) -> None:
        if not self.open < self.close:
            raise ConfigError(
                f"the session opens at {self.open} but closes at {self.close}: set "
                "BRAPI_SESSION_OPEN before BRAPI_SESSION_CLOSE"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> TradingSession:
        return cls(
            settings.brapi_session_open,
            settings.brapi_session_close,
            ZoneInfo(settings.brapi_session_timezone),
        )

    def _bounds(self, day: date) -> tuple[datetime, datetime]:
        return (
            datetime.combine(day, self.open, tzinfo=self.timezone),
            datetime.combine(day, self.close, tzinfo=self.timezone),
        )

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.timezone)
        return local.weekday() in self.weekdays and self.open <= local.time() < self.close

    def next_open(self, now: datetime) -> datetime:
        """``now`` itself while the session is open, else its next opening (UTC)."""
        if self.is_open(now):
            return now
        today = now.astimezone(self.timezone).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            opening, _ = self._bounds(day)
            if day.weekday() in self.weekdays and opening > now:
                return opening.astimezone(UTC)
        raise ConfigError("the trading session has no weekdays")

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of session time between two instants."""
        total = 0.0
        day = start.astimezone(self.timezone).date()
        last = end.astimezone(self.timezone).date()
        while day <= last:
            if day.weekday() in self.weekdays:
                opening, closing = self._bounds(day)
                overlap = (min(end, closing) - max(start, opening)).total_seconds()
                total += max(0.0, overlap)
            day += timedelta(days=1)
        return total


class RequestBudget:
    """Requests left this calendar month (in the session's time zone), refilled each month.

    The count is per process: pass ``used`` when restarting mid-month to carry it over.
    """

    def __init__(self, monthly_limit: int, timezone: ZoneInfo, *, used: int = 0) -> None:
        if monthly_limit < 1:
            raise ConfigError("BRAPI_MONTHLY_REQUEST_BUDGET must be at least 1")
        self.monthly_limit = monthly_limit
        self.timezone = timezone
        self.used = used
        self._month: tuple[int, int] | None = None

    def _roll(self, now: datetime) -> None:
        local = now.astimezone(self.timezone)
        month = (local.year, local.month)
        if self._month is not None and month != self._month:
            self.used = 0
        self._month = month

    def remaining(self, now: datetime) -> int:
        self._roll(now)
        return max(0, self.monthly_limit - self.used)

    def month_end(self, now: datetime) -> datetime:
        """The first instant of next month, local time."""
        local = now.astimezone(self.timezone)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return datetime(year, month, 1, tzinfo=self.timezone)

    def spend(self, now: datetime, requests: int = 1) -> None:
        if self.remaining(now) < requests:
            raise self.exhausted(now, requests)
        self.used += requests

    def exhausted(self, now: datetime, needed: int = 1) -> BrapiBudgetExhaustedError:
        local = now.astimezone(self.timezone)
        return BrapiBudgetExhaustedError(
            f"the Brapi budget of {self.monthly_limit} requests for {local:%Y-%m} is used up "
            f"({self.used} made, {needed} more needed); it refills on "
            f"{self.month_end(now):%Y-%m-%d %H:%M %Z}. Raise BRAPI_MONTHLY_REQUEST_BUDGET if your "
            "plan allows more, or poll fewer BRAPI_SYMBOLS."
        )


# --- the poller (I/O) ---------------------------------------------------------------------------
class BrapiPoller:
    """Raw ``/api/quote`` response bodies, polled for ever within the budget and trading hours.

    Live use (needs the network, so not a doctest)::

        async with BrapiPoller() as poller, contextlib.aclosing(poller.responses()) as bodies:
            async for frame in bodies:
                result = parse_frame(*frame)  # one Quote per ticker, or dead letters

    Each poll cycle requests every batch of ``BRAPI_TICKERS_PER_REQUEST`` tickers once; cycles
    start ``poll_interval()`` apart: the remaining month's session time spread evenly over the
    remaining budget, never closer than ``BRAPI_MIN_POLL_INTERVAL_S``. Outside the session the
    poller sleeps until the next opening. Rate limits and outages are retried (and, when every
    attempt fails, skipped until the next cycle); a bad token, an unknown ticker, Brapi's plan
    limit and our spent budget raise.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        symbols: Sequence[str] | None = None,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = random.random,
        requests_used_this_month: int = 0,
    ) -> None:
        settings = settings or get_settings()
        tickers = [symbol.strip().upper() for symbol in (symbols or settings.brapi_symbols)]
        if not tickers:
            raise ConfigError("no Brapi tickers to poll: set BRAPI_SYMBOLS")
        size = settings.brapi_tickers_per_request
        self.batches = [tickers[start : start + size] for start in range(0, len(tickers), size)]
        self.base_url = settings.brapi_base_url.rstrip("/")
        self.session = (
            TradingSession.from_settings(settings) if settings.brapi_market_hours_only else None
        )
        self.budget = RequestBudget(
            settings.brapi_monthly_request_budget,
            ZoneInfo(settings.brapi_session_timezone),
            used=requests_used_this_month,
        )
        self.min_interval = settings.brapi_min_poll_interval_s
        self.max_attempts = settings.brapi_max_attempts
        self.backoff = Backoff(settings.vendor_backoff_initial_s, settings.vendor_backoff_max_s)
        headers = {"Accept": "application/json", "User-Agent": "brokerflow"}
        if settings.brapi_token:
            headers["Authorization"] = f"Bearer {settings.brapi_token}"
        self._headers = headers
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=settings.brapi_timeout_s)
        self._now = now
        self._sleep = sleep
        self._random = random

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def poll_interval(self, now: datetime) -> float:
        """Seconds between cycle starts that spread the remaining budget over the month."""
        cost = len(self.batches)
        remaining = self.budget.remaining(now)
        if remaining < cost:
            raise self.budget.exhausted(now, cost)
        month_end = self.budget.month_end(now)
        if self.session is None:
            window = (month_end - now).total_seconds()
        else:
            window = self.session.open_seconds(now, month_end)
        return max(self.min_interval, window * cost / remaining)

    async def responses(self) -> AsyncIterator[Frame]:
        """One frame per successful request, for ever (close the iterator to stop)."""
        while True:
            now = self._now()
            if self.session is not None and not self.session.is_open(now):
                opening = self.session.next_open(now)
                log.info("brapi: B3 is closed; next poll at the opening, %s", opening)
                await self._sleep((opening - now).total_seconds())
                continue
            interval = self.poll_interval(now)
            for tickers in self.batches:
                try:
                    frame = await self.fetch(tickers)
                except (BrapiRateLimitedError, BrapiUnavailableError) as exc:
                    log.warning("brapi: skipping %s this cycle: %s", ",".join(tickers), exc)
                    continue
                yield frame
            wait = (now + timedelta(seconds=interval) - self._now()).total_seconds()
            if wait > 0:
                await self._sleep(wait)

    async def fetch(self, tickers: Sequence[str]) -> Frame:
        """One ``/api/quote`` request, retried on 429 (after ``Retry-After``), 5xx and network
        errors up to ``BRAPI_MAX_ATTEMPTS``; every attempt counts against the budget."""
        url = f"{self.base_url}/api/quote/{','.join(tickers)}"
        error: BrapiError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                assert error is not None
                delay = error.retry_after
                if delay is None:
                    delay = self.backoff.delay(attempt - 1, self._random)
                log.warning("brapi: %s Retrying in %.2f s.", error, delay)
                await self._sleep(delay)
            self.budget.spend(self._now())
            try:
                response = await self._client.get(url, headers=self._headers)
            except httpx.TransportError as exc:
                VENDOR_FETCH_FAILURE.labels(vendor=VENDOR, reason="transport").inc()
                error = BrapiUnavailableError(
                    f"could not reach Brapi at {self.base_url} ({type(exc).__name__}: {exc}); "
                    "check BRAPI_BASE_URL and the network."
                )
                continue
            receive_time = self._now()
            if response.status_code == httpx.codes.OK:
                VENDOR_FETCH_SUCCESS.labels(vendor=VENDOR).inc()
                return Frame(VENDOR, response.text, receive_time)
            VENDOR_FETCH_FAILURE.labels(vendor=VENDOR, reason=f"http_{response.status_code}").inc()
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), receive_time)
            error = _error_for(response.status_code, response.text, tickers, retry_after)
            if not error.retryable:
                raise error
        assert error is not None
        raise error
