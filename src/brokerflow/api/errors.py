"""One error shape for every answer that is not a success, and the status each error gets.

Every error body is ``{"code": "INSUFFICIENT_BUYING_POWER", "message": "...", ...}`` with useful
fields beside (``field`` for the camelCase input that is wrong, ``orderId`` when one is known).
FastAPI's own validation and HTTP errors are re-shaped here, so a client parses one thing::

    400 MALFORMED_JSON, IDEMPOTENCY_KEY_MISMATCH   the request cannot be read
    401 NOT_AUTHENTICATED, INVALID_TOKEN, TOKEN_EXPIRED, INVALID_CREDENTIALS (WWW-Authenticate)
    403 a business refusal: INSUFFICIENT_BUYING_POWER, MARKET_CLOSED...
    404 UNKNOWN_ORDER, NOT_FOUND                  409 USERNAME_TAKEN, ORDER_NOT_OPEN, IN_PROGRESS
    422 VALIDATION_ERROR, TICK_SIZE, LOT_SIZE...  429 RATE_LIMITED (Retry-After)
    503 KAFKA_UNAVAILABLE, MONGO_UNAVAILABLE, REDIS_UNAVAILABLE (names the servers)

The accounts agent refuses with a code (:class:`~brokerflow.schemas.accounts.RequestRefused`);
:data:`REFUSAL_STATUS` maps it to HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "REFUSAL_FIELD",
    "REFUSAL_STATUS",
    "ApiError",
    "ErrorBody",
    "ErrorItem",
    "error_responses",
    "install_error_handlers",
    "refusal",
    "unavailable",
    "validation_error",
]

log = logging.getLogger(__name__)

#: HTTP status of each refusal code of the accounts agent and the pure core's ``check_order``.
#: A code not listed is a business refusal: 403.
REFUSAL_STATUS: Mapping[str, int] = {
    "UNKNOWN_ACCOUNT": 404,
    "ACCOUNT_EXISTS": 409,
    "UNKNOWN_SYMBOL": 422,
    "UNKNOWN_CURRENCY": 422,
    "AMOUNT_PRECISION": 422,
    "TICK_SIZE": 422,
    "LOT_SIZE": 422,
    "AMEND_BELOW_FILLED": 422,
    "MARKET_CLOSED": 403,
    "INSUFFICIENT_BUYING_POWER": 403,
    "INSUFFICIENT_SHARES": 403,
    "INSUFFICIENT_FUNDS": 403,
    "NO_MARKET_PRICE": 403,
    "ORDER_ID_IN_USE": 409,
    "UNKNOWN_ORDER": 404,
    "ORDER_NOT_OPEN": 409,
    "CANCEL_PENDING": 409,
    "AMEND_PENDING": 409,
}

#: The request field a refusal is about, when it is about one (camelCase, as the client sent it).
REFUSAL_FIELD: Mapping[str, str] = {
    "UNKNOWN_SYMBOL": "symbol",
    "UNKNOWN_CURRENCY": "currency",
    "AMOUNT_PRECISION": "amount",
    "AMEND_BELOW_FILLED": "quantity",
    "TICK_SIZE": "price",
    "LOT_SIZE": "quantity",
    "MARKET_CLOSED": "timeInForce",
    "INSUFFICIENT_FUNDS": "amount",
}


class ErrorItem(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    field: str = Field(description="The input at fault, camelCase (`body` for the whole body)")
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "INSUFFICIENT_BUYING_POWER",
                    "message": "buying power BRL 1000.00 is short of the 3812.00 this order holds",
                    "orderId": "0f8e7c52-3c1a-5b2e-9d7a-2f4c1e9b8a10",
                }
            ]
        },
    )

    code: str = Field(description="Machine-readable, stable: switch on this")
    message: str = Field(description="What went wrong and what to do, for a person")
    field: str | None = Field(None, description="The camelCase input at fault, when there is one")
    errors: list[ErrorItem] | None = Field(
        None, description="Every validation problem, when there are several"
    )
    order_id: str | None = Field(None, description="The order the error is about, if any")
    request_id: str | None = Field(None, description="The request the error is about, if any")
    retry_after: int | None = Field(None, description="Seconds to wait before retrying (429, 503)")


class ApiError(Exception):
    """Raised anywhere in a request; rendered as :class:`ErrorBody` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        model = ErrorBody(code=self.code, message=self.message, field=self.field, **self.extra)
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def refusal(code: str, message: str, **extra: Any) -> ApiError:
    """The HTTP error for a refusal code of the accounts agent or of ``check_order``."""
    code = str(code)  # the core's codes are a StrEnum
    return ApiError(
        REFUSAL_STATUS.get(code, 403), code, message, field=REFUSAL_FIELD.get(code), **extra
    )


_SERVICE_CODES = {"Kafka": "KAFKA_UNAVAILABLE", "MongoDB": "MONGO_UNAVAILABLE"}


def unavailable(service: str, where: str, cause: BaseException | str) -> ApiError:
    """503 naming the service, where it was expected and what to run."""
    reason = cause if isinstance(cause, str) else (str(cause) or type(cause).__name__)
    return ApiError(
        503,
        _SERVICE_CODES.get(service, f"{service.upper()}_UNAVAILABLE"),
        f"{service} at {where} is unavailable ({reason}); start the local stack with "
        "`brokerflow stack up`, then retry",
        headers={"Retry-After": "5"},
        retry_after=5,
    )


# --- request validation --------------------------------------------------------------------

_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def _field_name(loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """FastAPI's list of pydantic errors as one :class:`ApiError`: 400 for a body that is not
    JSON, otherwise 422 naming the first field (camelCase, as the client wrote it)."""
    for error in errors:
        if error.get("type") == "json_invalid":
            where = error.get("loc", ())
            position = f" at character {where[1]}" if len(where) > 1 else ""
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            return ApiError(
                400,
                "MALFORMED_JSON",
                f"the body is not valid JSON{position}: {reason}; send a JSON object",
                field="body",
            )
        if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
            # Not parsed at all: the Content-Type did not say JSON.
            return ApiError(
                400,
                "MALFORMED_JSON",
                "the body was not sent as JSON; send a JSON object with "
                "Content-Type: application/json",
                field="body",
            )
    items: list[ErrorItem] = []
    for error in errors:
        field = _field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "a JSON body is required" if field == "body" else "this field is required"
        elif error.get("type") == "extra_forbidden":
            message = "unknown field (names are camelCase; see /docs)"
        items.append(ErrorItem(field=field, message=message))
    if not items:
        items.append(ErrorItem(field="body", message="the request is not valid"))
    first = items[0]
    return ApiError(
        422,
        "VALIDATION_ERROR",
        f"{first.field}: {first.message}",
        field=first.field,
        errors=[item.model_dump(by_alias=True) for item in items],
    )


def _http_error(status: int, detail: Any) -> ApiError:
    if status == 404:
        return ApiError(404, "NOT_FOUND", "no such resource; the API is described at /docs")
    if status == 400:  # FastAPI's only 400: a body it could not read (not UTF-8...)
        return ApiError(
            400,
            "MALFORMED_JSON",
            f"{detail if isinstance(detail, str) else 'the body could not be read'}; send a "
            "UTF-8 JSON object",
            field="body",
        )
    if status == 405:
        return ApiError(405, "METHOD_NOT_ALLOWED", "this method is not allowed here; see /docs")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    code = re.sub(r"[^A-Z0-9]+", "_", phrase.upper()).strip("_")
    return ApiError(status, code, detail if isinstance(detail, str) and detail else phrase)


def install_error_handlers(app: FastAPI) -> None:
    """Replace FastAPI's validation and HTTP error answers with :class:`ErrorBody`."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error(exc.errors()).response()

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error = _http_error(exc.status_code, exc.detail)
        error.headers.update(exc.headers or {})
        return error.response()

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback; the client still gets the one shape.
        log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        error = ApiError(500, "INTERNAL_ERROR", "an unexpected error; it has been logged")
        return error.response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


_DESCRIPTIONS = {
    400: "The body is not JSON, or the idempotency key in the header and in the body differ",
    401: "No bearer token, or a bad or expired one",
    403: "Refused by the broker's rules (buying power, shares, market closed...)",
    404: "No such order (or not yours)",
    409: "Conflicts with the current state (username taken, order not open, request in flight)",
    422: "A field is invalid; `field` names it",
    429: "Too many requests for this user; see Retry-After",
    503: "Kafka, MongoDB or Redis is unreachable; the message names it",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with :class:`ErrorBody` for these statuses."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }
