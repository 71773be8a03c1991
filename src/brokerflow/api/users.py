"""Sign up and log in: ``POST /api/v1/users`` and ``POST /api/v1/auth/token``.

A user is a document in MongoDB ``users`` (``_id`` = user id, unique ``username``, the Argon2
hash, the account id). Signing up also opens the user's broker account: an ``OpenAccount``
request on ``account-commands-v1``, keyed by account, so every later request of the account
(deposits, orders) is decided after it. The answer does not wait for that decision: ordering
on the partition already guarantees it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter
from pymongo.errors import DuplicateKeyError

from brokerflow.api.context import USERS
from brokerflow.api.deps import Context
from brokerflow.api.errors import ApiError, error_responses
from brokerflow.api.models import SignupRequest, SignupResponse, TokenRequest, TokenResponse
from brokerflow.api.security import Principal
from brokerflow.schemas.accounts import OpenAccount
from brokerflow.schemas.base import format_utc

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.post(
    "/users",
    status_code=201,
    response_model=SignupResponse,
    responses=error_responses(400, 409, 422, 503),
    summary="Sign up: a user and their broker account",
)
async def sign_up(body: SignupRequest, ctx: Context) -> SignupResponse:
    """Creates the user and opens their account (empty: fund it with a deposit)."""
    ctx.kafka.require()  # before anything is written: a user without an account helps nobody
    await ctx.ensure_indexes()
    now = datetime.now(UTC)
    user_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
    hashed = await ctx.passwords.hash(body.password)
    users = ctx.db[USERS]
    document = {
        "_id": user_id,
        "username": body.username.lower(),
        "passwordHash": hashed,
        "accountId": account_id,
        "createdAt": format_utc(now),
    }
    try:
        await ctx.mongo_op(users.insert_one(document))
    except DuplicateKeyError:
        raise ApiError(
            409,
            "USERNAME_TAKEN",
            f"the username {body.username!r} is taken; choose another",
            field="username",
        ) from None
    opening = OpenAccount(
        request_id=str(uuid.uuid4()), account_id=account_id, user_id=user_id, event_time=now
    )
    try:
        await ctx.request(opening, wait=False)
    except ApiError:
        # Not opened: take the user back so the same username can sign up again.
        await ctx.mongo_op(users.delete_one({"_id": user_id}))
        raise
    return SignupResponse(user_id=user_id, account_id=account_id)


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    responses=error_responses(400, 401, 422, 503),
    summary="Log in: an access token",
)
async def issue_token(body: TokenRequest, ctx: Context) -> TokenResponse:
    """Send the token as `Authorization: Bearer <accessToken>` until it expires."""
    found = await ctx.mongo_op(ctx.db[USERS].find_one({"username": body.username.lower()}))
    hashed = found.get("passwordHash") if found else None
    valid = await ctx.passwords.verify(body.password, hashed if isinstance(hashed, str) else None)
    if not valid or found is None:
        raise ApiError(
            401,
            "INVALID_CREDENTIALS",
            "unknown username or wrong password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = Principal(user_id=str(found["_id"]), account_id=str(found["accountId"]))
    return TokenResponse(access_token=ctx.tokens.issue(principal), expires_in=ctx.tokens.ttl_s)
