"""The API's request metrics: labelled by route template (never an id from the path)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from brokerflow.api.telemetry import RequestMetrics
from brokerflow.metrics import metric_value


def app() -> FastAPI:
    api = FastAPI()
    api.add_middleware(RequestMetrics)

    @api.get("/api/v1/things/{thingId}")
    async def thing(thingId: str) -> dict[str, str]:  # noqa: N803
        return {"id": thingId}

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return api


def count(route: str, status: str) -> float:
    return metric_value("http_requests_total", method="GET", route=route, status=status)


def timed(route: str) -> float:
    return metric_value("http_request_duration_seconds_count", method="GET", route=route)


async def test_requests_are_counted_by_route_template_and_status() -> None:
    template = "/api/v1/things/{thingId}"
    before = (count(template, "200"), count("unmatched", "404"), timed(template))
    before_boom = count("/boom", "500")
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/api/v1/things/ord-1")).status_code == 200
        assert (await client.get("/api/v1/things/ord-2")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/boom")).status_code == 500

    after = (count(template, "200"), count("unmatched", "404"), timed(template))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 2]
    assert count("/boom", "500") - before_boom == 1
    assert (
        metric_value(
            "http_requests_total", method="GET", route="/api/v1/things/ord-1", status="200"
        )
        == 0
    )
