"""The broker's HTTP API (FastAPI): users and tokens, funding, orders, account and portfolio.

Run it with ``uvicorn brokerflow.api:app`` (settings from the environment and ``.env``) or
``python -m brokerflow.api`` (``API_HOST``/``API_PORT``); OpenAPI at ``/docs`` and
``/openapi.json``. Build one for given settings with :func:`create_app`.

Where a reader starts: ``factory.py`` (the app and its lifespan), ``orders.py`` (placing an order,
step by step), ``idempotency.py``, ``decisions.py`` (waiting for the accounts agent),
``errors.py`` (the one error shape and each status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from brokerflow.api.factory import create_app

    app: FastAPI

__all__ = ["app", "create_app"]

_app: Any = None


def __getattr__(name: str) -> Any:
    # Imported and built on first use: importing a piece (errors, idempotency) loads no app and
    # reads no environment.
    global _app
    if name == "create_app":
        from brokerflow.api.factory import create_app

        return create_app
    if name == "app":
        if _app is None:
            from brokerflow.api.factory import create_app

            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
