"""Schemathesis (v4) over the whole OpenAPI, in-process against the ASGI app, on the real stack.

Every operation gets generated requests, valid and invalid (positive and negative modes), sent
with a real user's token so they reach the handlers; every answer must be no server error, a
status the schema documents, of the documented content type and conforming to the documented
body schema. The accounts agent is the test's stand-in, so orders and funding get real
decisions (accepted and refused).

Bounded: ``MAX_EXAMPLES`` per operation and phase keeps the run well under 90 s.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pymongo import MongoClient
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from brokerflow.api import create_app
from brokerflow.settings import Settings
from brokerflow.topics import delete_topics

from .api_harness import PASSWORD, StandInAccountsAgent, api_settings

MAX_EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _AgentThread:
    """The stand-in accounts agent on its own event loop (the app runs on schemathesis')."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.error: BaseException | None = None

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with StandInAccountsAgent(self.settings):
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def __enter__(self) -> _AgentThread:
        self._thread.start()
        assert self._ready.wait(60), "the stand-in accounts agent did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


#: The app is built at import (no I/O: its lifespan starts with the first request), so that
#: schemathesis can make one test per operation of its OpenAPI document.
_UNIQUE = uuid.uuid4().hex[:10]
_SETTINGS = api_settings(
    Settings(), _UNIQUE, api_rate_limit="100000/second", api_decision_wait_ms=1000
)
_APP = create_app(_SETTINGS)

# Schemathesis' own strategies trip a Hypothesis deprecation warning; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

schema = schemathesis.openapi.from_dict(_APP.openapi())  # what /openapi.json serves
schema.app = _APP
schema.location = "/openapi.json"


@pytest.fixture(scope="module")
def auth(settings: Settings) -> Iterator[dict[str, str]]:
    """A funded user's bearer header; the app and the stand-in agent run meanwhile."""
    redis = Redis.from_url(settings.redis_url)
    try:
        with _AgentThread(_SETTINGS), asgi.get_client(_APP) as client:
            username = f"st{_UNIQUE}"
            signup = client.post("/api/v1/users", json={"username": username, "password": PASSWORD})
            assert signup.status_code == 201, signup.text
            token = client.post(
                "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
            ).json()["accessToken"]
            header = {"Authorization": f"Bearer {token}"}
            for currency, amount in (("BRL", "100000.00"), ("USDT", "100000")):
                funded = client.post(
                    "/api/v1/account/deposits",
                    json={"currency": currency, "amount": amount},
                    headers=header,
                )
                assert funded.status_code == 201, funded.text
            redis.hset(f"{_SETTINGS.stats_redis_prefix}market:last_price", "PETR4", "38.12")
            yield header
            asgi.shutdown_lifespans()
    finally:
        keys = list(redis.scan_iter(match=f"test-{_UNIQUE}:*", count=1000))
        if keys:
            redis.delete(*keys)
        redis.close()
        MongoClient(settings.mongo_url).drop_database(_SETTINGS.mongo_database)
        asyncio.run(delete_topics(settings, lambda name: _UNIQUE in name))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_and_never_fails(case: Any, auth: dict[str, str]) -> None:
    case.call_and_validate(headers=auth, checks=CHECKS)
