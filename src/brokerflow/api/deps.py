"""FastAPI dependencies: the shared context, the caller (bearer token) and their rate limit.

``Caller`` = a valid token and room in the user's rate-limit window. The rate-limit headers are
left in the request's state and stamped on the answer by :class:`RateLimitHeaders`, so that
every authenticated answer carries them, errors included.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerflow.api.context import ApiContext
from brokerflow.api.errors import ApiError
from brokerflow.api.security import Principal, TokenError

__all__ = ["Caller", "Context", "RateLimitHeaders", "caller", "context"]

_STATE_KEY = "rate_limit_headers"

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /api/v1/auth/token",
    bearerFormat="JWT",
)


def context(request: Request) -> ApiContext:
    ctx: ApiContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:
        raise ApiError(503, "STARTING", "the API is starting; retry in a moment")
    return ctx


Context = Annotated[ApiContext, Depends(context)]


def _unauthorized(code: str, message: str, error: str | None = None) -> ApiError:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


async def caller(
    request: Request,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated user, once their request fits in the rate limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(
            "NOT_AUTHENTICATED",
            "send `Authorization: Bearer <token>`; get a token from POST /api/v1/auth/token",
        )
    try:
        principal = ctx.tokens.verify(credentials.credentials)
    except TokenError as exc:
        code = "TOKEN_EXPIRED" if exc.reason == "expired" else "INVALID_TOKEN"
        raise _unauthorized(code, exc.detail, "invalid_token") from None
    state = await ctx.redis_op(ctx.limiter.hit(principal.user_id))
    headers = state.headers()
    request.scope.setdefault("state", {})[_STATE_KEY] = headers
    if not state.allowed:
        wait = state.retry_after(time.time())
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more than {ctx.settings.api_rate_limit} requests; retry in {wait} s",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )
    return principal


Caller = Annotated[Principal, Depends(caller)]


class RateLimitHeaders:
    """Adds the caller's X-RateLimit-* headers (left by :func:`caller`) to the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = (scope.get("state") or {}).get(_STATE_KEY)
                if headers:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    extra = [
                        (name.lower().encode(), value.encode())
                        for name, value in headers.items()
                        if name.lower().encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, stamped)
