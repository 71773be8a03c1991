"""Prometheus metrics of the API: requests by route template and status, and their latency.

Labelled by the route's template (``/api/v1/orders/{orderId}``), never the raw path, so an order
id cannot become a label value; a path that matched no route counts as ``unmatched``. Served on
``METRICS_PORT`` (``brokerflow run`` gives each service its own), not by the API itself, so the
metrics stay out of the OpenAPI document and the rate limit.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerflow.metrics import HTTP_LATENCY, HTTP_REQUESTS

__all__ = ["RequestMetrics"]


class RequestMetrics:
    """Counts every HTTP answer and times it to the start of the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raised before starting a response

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                HTTP_LATENCY.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            HTTP_REQUESTS.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
