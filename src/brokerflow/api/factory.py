"""``create_app(settings)``: the broker's HTTP API as an ASGI app (FastAPI).

The lifespan opens Kafka (producer and decision reader), MongoDB and Redis, and closes them; the
app starts even when one of them is down, and answers 503 naming it until it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel

from brokerflow.api import account, alerts, assets, orders, queries, users, ws
from brokerflow.api.context import ApiContext
from brokerflow.api.deps import Context, RateLimitHeaders
from brokerflow.api.errors import error_responses, install_error_handlers
from brokerflow.api.telemetry import RequestMetrics
from brokerflow.broker import BrokerRules
from brokerflow.metrics import serve_metrics
from brokerflow.settings import Settings, get_settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """
The broker of brokerflow: sign up, fund the account, place and follow orders.

1. `POST /api/v1/users` then `POST /api/v1/auth/token`; send the token as
   `Authorization: Bearer <accessToken>` (the **Authorize** button here).
2. `POST /api/v1/account/deposits`, then `POST /api/v1/orders`.

JSON keys are camelCase, decimals are strings (`"38.12"`), times ISO 8601 in UTC (`Z`). Every
error is `{"code", "message", ...}`; `field` names the input at fault. Orders accept an
idempotency key (`Idempotency-Key` header or `idempotencyKey`): a retry returns the first
answer, never a second order.
"""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    kafka: bool


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for these settings (the environment's when None). Nothing connects until the
    lifespan starts, so building an app is cheap and safe."""
    settings = settings or get_settings()
    rules = BrokerRules.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        port = serve_metrics(settings.metrics_port)
        if port is not None:
            log.info("API metrics on http://127.0.0.1:%d/metrics", port)
        ctx = await ApiContext.open(settings, rules)
        app.state.ctx = ctx
        try:
            yield
        finally:
            app.state.ctx = None
            await ctx.close()

    app = FastAPI(
        title="brokerflow broker API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ctx = None
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(RequestMetrics)
    for module in (users, account, assets, queries, orders, alerts, ws):
        app.include_router(module.router)

    @app.get(
        "/api/v1/health",
        response_model=Health,
        responses=error_responses(503),
        tags=["health"],
        summary="Liveness, and whether Kafka is connected",
    )
    async def health(ctx: Context) -> Health:
        """`ok` when Kafka is connected (MongoDB and Redis are checked by each request)."""
        connected = ctx.kafka.waiter.running
        return Health(status="ok" if connected else "degraded", kafka=connected)

    return app
