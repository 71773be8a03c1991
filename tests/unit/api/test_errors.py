"""The one error shape: refusal codes to statuses, FastAPI's errors re-shaped, 503 wording."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from brokerflow.api.errors import (
    ApiError,
    install_error_handlers,
    refusal,
    unavailable,
    validation_error,
)


@pytest.mark.parametrize(
    ("code", "status", "field"),
    [
        ("INSUFFICIENT_BUYING_POWER", 403, None),
        ("INSUFFICIENT_SHARES", 403, None),
        ("INSUFFICIENT_FUNDS", 403, "amount"),
        ("MARKET_CLOSED", 403, "timeInForce"),
        ("NO_MARKET_PRICE", 403, None),
        ("UNKNOWN_SYMBOL", 422, "symbol"),
        ("TICK_SIZE", 422, "price"),
        ("LOT_SIZE", 422, "quantity"),
        ("UNKNOWN_ORDER", 404, None),
        ("UNKNOWN_ACCOUNT", 404, None),
        ("ORDER_NOT_OPEN", 409, None),
        ("CANCEL_PENDING", 409, None),
        ("ORDER_ID_IN_USE", 409, None),
        ("ACCOUNT_EXISTS", 409, None),
        ("AMEND_PENDING", 409, None),
        ("UNKNOWN_CURRENCY", 422, "currency"),
        ("AMOUNT_PRECISION", 422, "amount"),
        ("AMEND_BELOW_FILLED", 422, "quantity"),
        ("A_CODE_ADDED_LATER", 403, None),  # any other refusal is a business refusal
    ],
)
def test_refusal_codes_map_to_statuses(code: str, status: int, field: str | None) -> None:
    error = refusal(code, "why", order_id="o-1")
    assert (error.status, error.code, error.field) == (status, code, field)
    expected = {"code": code, "message": "why", "orderId": "o-1"}
    if field is not None:
        expected["field"] = field
    assert error.body() == expected


def test_unavailable_names_the_servers_and_what_to_run() -> None:
    error = unavailable("Kafka", "127.0.0.1:1", "connection refused")
    assert error.status == 503
    assert error.code == "KAFKA_UNAVAILABLE"
    assert "Kafka at 127.0.0.1:1 is unavailable (connection refused)" in error.message
    assert "`brokerflow stack up`" in error.message
    assert error.headers == {"Retry-After": "5"}
    assert unavailable("MongoDB", "mongodb://x", "down").code == "MONGO_UNAVAILABLE"
    assert unavailable("Redis", "redis://x", "down").code == "REDIS_UNAVAILABLE"


def test_invalid_json_is_a_400_not_a_422() -> None:
    error = validation_error(
        [
            {
                "type": "json_invalid",
                "loc": ("body", 1),
                "msg": "JSON decode error",
                "ctx": {"error": "Expecting property name enclosed in double quotes"},
            }
        ]
    )
    assert (error.status, error.code, error.field) == (400, "MALFORMED_JSON", "body")
    assert "at character 1" in error.message


def test_validation_names_every_field_without_its_location_prefix() -> None:
    error = validation_error(
        [
            {"type": "missing", "loc": ("body", "price"), "msg": "Field required"},
            {"type": "extra_forbidden", "loc": ("body", "qty"), "msg": "Extra inputs"},
            {"type": "value_error", "loc": ("header", "Idempotency-Key"), "msg": "Value error, x"},
        ]
    )
    assert (error.status, error.code, error.field) == (422, "VALIDATION_ERROR", "price")
    assert error.body()["errors"] == [
        {"field": "price", "message": "this field is required"},
        {"field": "qty", "message": "unknown field (names are camelCase; see /docs)"},
        {"field": "Idempotency-Key", "message": "x"},
    ]
    assert error.message == "price: this field is required"


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")

    time_in_force: int


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    async def post(body: _Body) -> dict[str, int]:
        return {"n": body.time_in_force}

    @app.get("/refused")
    async def refused() -> None:
        raise refusal("INSUFFICIENT_BUYING_POWER", "short by 10.00")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "no coffee")

    return app


async def _call(method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_fastapi_errors_come_out_in_the_one_shape() -> None:
    response = await _call("POST", "/things", json={"timeInForce": "soon"})
    assert response.status_code == 422
    assert response.json()["field"] == "timeInForce"
    assert response.json()["code"] == "VALIDATION_ERROR"

    response = await _call(
        "POST", "/things", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "MALFORMED_JSON")

    response = await _call("POST", "/things", content=b"{nope")  # no JSON content type
    assert (response.status_code, response.json()["code"]) == (400, "MALFORMED_JSON")

    response = await _call("GET", "/refused")
    assert response.status_code == 403
    assert response.json() == {"code": "INSUFFICIENT_BUYING_POWER", "message": "short by 10.00"}

    response = await _call("GET", "/nowhere")
    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")
    response = await _call("DELETE", "/things")
    assert (response.status_code, response.json()["code"]) == (405, "METHOD_NOT_ALLOWED")
    response = await _call(
        "POST", "/things", content=b"\xe4", headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "MALFORMED_JSON")

    response = await _call("GET", "/teapot")
    assert response.json() == {"code": "I_M_A_TEAPOT", "message": "no coffee"}


def test_api_error_keeps_its_headers() -> None:
    error = ApiError(401, "NOT_AUTHENTICATED", "m", headers={"WWW-Authenticate": "Bearer"})
    response = error.response()
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
