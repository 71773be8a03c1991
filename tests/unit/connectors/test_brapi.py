"""BrapiPoller against a local HTTP server, and the pure session/budget arithmetic."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from brokerflow.connectors import (
    BrapiAuthError,
    BrapiBudgetExhaustedError,
    BrapiPlanLimitError,
    BrapiPoller,
    BrapiRateLimitedError,
    BrapiUnavailableError,
    BrapiUnknownTickerError,
    Frame,
    RequestBudget,
    TradingSession,
    parse_frame,
)
from brokerflow.errors import BrokerflowError, ConfigError
from brokerflow.metrics import metric_value
from brokerflow.settings import Settings

from .fakes import Canned, FakeClock, FakeHttpServer, take

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
B3 = TradingSession(time(10), time(17), SAO_PAULO)
#: Thursday 2026-04-23, 14:07 in Sao Paulo: the session is open.
THURSDAY_AFTERNOON = datetime(2026, 4, 23, 17, 7, tzinfo=UTC)
HALF = 0.5  # the injected "random": every backoff delay is 75 % of its ceiling

PETR4_BODY = (
    '{"results":[{"symbol":"PETR4","currency":"BRL","regularMarketPrice":37.85,'
    '"regularMarketTime":"2026-04-23T17:07:00.000Z","regularMarketVolume":45678900,'
    '"regularMarketDayHigh":38.0,"regularMarketDayLow":37.2,"regularMarketPreviousClose":37.4}],'
    '"requestedAt":"2026-04-23T17:07:42.073Z","took":245}'
)
OK = Canned(200, PETR4_BODY)


def settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "brapi_base_url": base_url,
        "brapi_symbols": ["PETR4"],
        "brapi_token": "",
        "brapi_max_attempts": 3,
        "vendor_backoff_initial_s": 1.0,
        "vendor_backoff_max_s": 8.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def poller(server: FakeHttpServer, clock: FakeClock | None = None, **overrides: Any) -> BrapiPoller:
    clock = clock or FakeClock(THURSDAY_AFTERNOON)
    return BrapiPoller(
        settings(server.base_url, **overrides),
        now=clock.now,
        sleep=clock.sleep,
        random=lambda: HALF,
    )


# --- requests and errors ------------------------------------------------------------------------


async def test_a_quote_request_sends_the_bearer_token_and_yields_the_raw_body() -> None:
    async with FakeHttpServer([OK]) as server, poller(server, brapi_token="s3cret") as brapi:
        frame = await brapi.fetch(["PETR4", "VALE3"])

    (request,) = server.requests
    assert (request.method, request.path) == ("GET", "/api/quote/PETR4,VALE3")
    assert request.headers["authorization"] == "Bearer s3cret"
    assert (frame.vendor, frame.raw, frame.receive_time) == (
        "brapi",
        PETR4_BODY,
        THURSDAY_AFTERNOON,
    )
    (quote,) = parse_frame(*frame).records
    assert (quote.symbol, str(quote.last_price)) == ("PETR4", "37.85")


async def test_without_a_token_no_authorization_header_is_sent() -> None:
    async with FakeHttpServer([OK]) as server, poller(server) as brapi:
        await brapi.fetch(["PETR4"])

    assert "authorization" not in server.requests[0].headers


@pytest.mark.parametrize(
    ("status", "body", "error", "message_parts"),
    [
        (
            401,
            '{"error":true,"message":"O seu token é inválido"}',
            BrapiAuthError,
            ("HTTP 401: O seu token é inválido", "BRAPI_TOKEN"),
        ),
        (
            402,
            '{"error":true,"message":"Você atingiu o limite de requisições do seu plano"}',
            BrapiPlanLimitError,
            ("HTTP 402: Você atingiu o limite", "Upgrade the plan"),
        ),
        (
            404,
            '{"error":"Não encontramos a ação XPTO4"}',
            BrapiUnknownTickerError,
            ("HTTP 404: Não encontramos a ação XPTO4", "Remove it from BRAPI_SYMBOLS"),
        ),
    ],
)
async def test_client_errors_raise_their_own_class_at_once(
    status: int, body: str, error: type[BrokerflowError], message_parts: tuple[str, ...]
) -> None:
    failures_before = metric_value(
        "vendor_fetch_failure_total", vendor="brapi", reason=f"http_{status}"
    )
    async with FakeHttpServer([Canned(status, body)]) as server, poller(server) as brapi:
        with pytest.raises(error) as raised:
            await brapi.fetch(["XPTO4"])

    assert len(server.requests) == 1  # not retried
    for part in message_parts:
        assert part in str(raised.value)
    assert raised.value.status == status
    failures = metric_value("vendor_fetch_failure_total", vendor="brapi", reason=f"http_{status}")
    assert failures - failures_before == 1


async def test_429_waits_the_retry_after_seconds_then_retries() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    limited = Canned(429, '{"error":true,"message":"Too many requests"}', {"Retry-After": "7"})
    async with FakeHttpServer([limited, OK]) as server, poller(server, clock) as brapi:
        frame = await brapi.fetch(["PETR4"])

    assert clock.delays == [7.0]
    assert len(server.requests) == 2
    assert frame.raw == PETR4_BODY


async def test_429_honours_a_retry_after_http_date() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    limited = Canned(429, '{"error":"slow down"}', {"Retry-After": "Thu, 23 Apr 2026 17:07:30 GMT"})
    async with FakeHttpServer([limited, OK]) as server, poller(server, clock) as brapi:
        await brapi.fetch(["PETR4"])

    assert clock.delays == [30.0]


async def test_429_on_every_attempt_raises_rate_limited_with_the_backoff_in_between() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    limited = Canned(429, '{"error":"slow down"}')
    async with FakeHttpServer([limited]) as server, poller(server, clock) as brapi:
        with pytest.raises(BrapiRateLimitedError, match="BRAPI_MIN_POLL_INTERVAL_S"):
            await brapi.fetch(["PETR4"])

    assert clock.delays == [0.75, 1.5]  # no Retry-After: jittered exponential backoff
    assert len(server.requests) == 3


async def test_503_is_retried_with_backoff_until_it_succeeds() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    unavailable = Canned(503, '{"error":true,"message":"Service Unavailable"}')
    responses = [unavailable, unavailable, OK]
    async with FakeHttpServer(responses) as server, poller(server, clock) as brapi:
        frame = await brapi.fetch(["PETR4"])

    assert clock.delays == [0.75, 1.5]
    assert frame.raw == PETR4_BODY


async def test_503_on_every_attempt_raises_unavailable_with_the_message() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    unavailable = Canned(503, '{"error":true,"message":"Service Unavailable"}')
    async with FakeHttpServer([unavailable]) as server, poller(server, clock) as brapi:
        with pytest.raises(BrapiUnavailableError, match="HTTP 503: Service Unavailable"):
            await brapi.fetch(["PETR4"])

    assert len(server.requests) == 3
    assert clock.delays == [0.75, 1.5]


# --- polling: hours, interval, budget -----------------------------------------------------------


async def test_outside_b3_hours_the_poller_waits_for_the_opening_then_spreads_the_budget() -> None:
    saturday_noon = datetime(2026, 4, 25, 12, 0, tzinfo=UTC)
    clock = FakeClock(saturday_noon)
    async with FakeHttpServer([OK]) as server:
        brapi = poller(
            server,
            clock,
            brapi_symbols=["PETR4", "VALE3"],
            brapi_monthly_request_budget=1000,
        )
        async with brapi, contextlib.aclosing(brapi.responses()) as bodies:
            await take(bodies, 6)

    # Saturday 12:00 UTC to Monday 10:00 in Sao Paulo (13:00 UTC): 49 hours.
    # Then 4 session days are left in April (27-30), 7 h each: 100800 s for 1000 requests
    # at 2 a cycle, so a cycle every 201.6 s; spending evenly keeps that interval.
    assert clock.delays == pytest.approx([176_400.0, 201.6, 201.6])
    assert [request.path for request in server.requests] == [
        "/api/quote/PETR4",
        "/api/quote/VALE3",
    ] * 3
    assert brapi.budget.used == 6


async def test_several_tickers_per_request_on_a_paid_plan() -> None:
    async with FakeHttpServer([OK]) as server:
        brapi = poller(
            server, brapi_symbols=["PETR4", "VALE3", "ITUB4"], brapi_tickers_per_request=2
        )
        async with brapi, contextlib.aclosing(brapi.responses()) as bodies:
            await take(bodies, 2)

    assert [request.path for request in server.requests] == [
        "/api/quote/PETR4,VALE3",
        "/api/quote/ITUB4",
    ]


async def test_the_poller_stops_with_a_clear_error_when_a_cycle_no_longer_fits_the_budget() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    async with FakeHttpServer([OK]) as server:
        brapi = poller(
            server,
            clock,
            brapi_symbols=["PETR4", "VALE3"],
            brapi_monthly_request_budget=5,
            brapi_market_hours_only=False,
        )
        received: list[Frame] = []

        async def poll_until_it_stops() -> None:
            async for frame in brapi.responses():
                received.append(frame)

        async with brapi:
            with pytest.raises(BrapiBudgetExhaustedError) as raised:
                await poll_until_it_stops()

    assert len(received) == len(server.requests) == 4  # two cycles of two; one request is left
    assert str(raised.value) == (
        "the Brapi budget of 5 requests for 2026-04 is used up (4 made, 2 more needed); it "
        "refills on 2026-05-01 00:00 -03. Raise BRAPI_MONTHLY_REQUEST_BUDGET if your plan allows "
        "more, or poll fewer BRAPI_SYMBOLS."
    )


async def test_spreading_the_budget_over_the_month_never_runs_it_dry() -> None:
    clock = FakeClock(THURSDAY_AFTERNOON)
    async with FakeHttpServer([OK]) as server:
        brapi = poller(server, clock, brapi_monthly_request_budget=3, brapi_market_hours_only=False)
        async with brapi, contextlib.aclosing(brapi.responses()) as bodies:
            await take(bodies, 5)

    # 640380 s left in April (Sao Paulo) for 3 requests: one every 213460 s, and the fourth
    # request falls on May 1st, 00:00 in Sao Paulo, with a fresh budget.
    assert clock.delays[:3] == pytest.approx([213_460.0] * 3)
    assert clock.now() >= datetime(2026, 5, 1, 3, 0, tzinfo=UTC)


async def test_retries_count_against_the_budget() -> None:
    unavailable = Canned(503, '{"error":"down"}')
    async with (
        FakeHttpServer([unavailable]) as server,
        poller(server, brapi_monthly_request_budget=2) as brapi,
    ):
        with pytest.raises(BrapiBudgetExhaustedError):
            await brapi.fetch(["PETR4"])

    assert len(server.requests) == 2


async def test_a_ticker_that_keeps_failing_is_skipped_for_the_cycle_not_fatal() -> None:
    unavailable = Canned(503, '{"error":"down"}')
    async with FakeHttpServer([unavailable, unavailable, unavailable, OK]) as server:
        brapi = poller(server, brapi_symbols=["PETR4", "VALE3"])
        async with brapi, contextlib.aclosing(brapi.responses()) as bodies:
            (frame,) = await take(bodies, 1)

    assert [request.path for request in server.requests] == ["/api/quote/PETR4"] * 3 + [
        "/api/quote/VALE3"
    ]
    assert frame.raw == PETR4_BODY


def test_budget_interval_at_the_start_of_april() -> None:
    brapi = BrapiPoller(
        settings("http://127.0.0.1:9", brapi_symbols=["PETR4", "VALE3", "ITUB4", "BBDC4"])
    )
    wednesday_open = datetime(2026, 4, 1, 13, 0, tzinfo=UTC)

    # 22 session days of 7 h in April 2026 = 554400 s; 15000 requests at 4 a cycle = 3750 cycles
    assert brapi.poll_interval(wednesday_open) == pytest.approx(147.84)


def test_budget_interval_never_goes_below_the_floor() -> None:
    brapi = BrapiPoller(settings("http://127.0.0.1:9", brapi_monthly_request_budget=10_000_000))
    assert brapi.poll_interval(THURSDAY_AFTERNOON) == 60.0


# --- the pure pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (datetime(2026, 4, 23, 12, 59, 59, tzinfo=UTC), False),  # 09:59:59 local
        (datetime(2026, 4, 23, 13, 0, tzinfo=UTC), True),  # 10:00 local
        (datetime(2026, 4, 23, 19, 59, 59, tzinfo=UTC), True),  # 16:59:59 local
        (datetime(2026, 4, 23, 20, 0, tzinfo=UTC), False),  # 17:00 local
        (datetime(2026, 4, 25, 15, 0, tzinfo=UTC), False),  # Saturday noon local
    ],
)
def test_b3_session_hours(moment: datetime, is_open: bool) -> None:
    assert B3.is_open(moment) is is_open


def test_next_opening_after_friday_close_is_monday() -> None:
    friday_evening = datetime(2026, 4, 24, 21, 0, tzinfo=UTC)
    assert B3.next_open(friday_evening) == datetime(2026, 4, 27, 13, 0, tzinfo=UTC)


def test_session_seconds_count_only_weekday_hours() -> None:
    thursday_noon_local = datetime(2026, 4, 23, 15, 0, tzinfo=UTC)
    monday_11_local = datetime(2026, 4, 27, 14, 0, tzinfo=UTC)
    # Thursday 12-17 (5 h), Friday 7 h, Monday 10-11 (1 h)
    assert B3.open_seconds(thursday_noon_local, monday_11_local) == 13 * 3600


def test_a_session_that_closes_before_it_opens_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BRAPI_SESSION_OPEN"):
        TradingSession(time(17), time(10), SAO_PAULO)


def test_budget_refills_when_the_month_turns_in_sao_paulo() -> None:
    budget = RequestBudget(2, SAO_PAULO)
    last_evening = datetime(2026, 5, 1, 2, 59, tzinfo=UTC)  # 23:59 on April 30 in Sao Paulo
    budget.spend(last_evening, 2)
    with pytest.raises(BrapiBudgetExhaustedError):
        budget.spend(last_evening)

    assert budget.remaining(datetime(2026, 5, 1, 3, 0, tzinfo=UTC)) == 2
