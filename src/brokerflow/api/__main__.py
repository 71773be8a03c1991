"""``python -m brokerflow.api``: serve the API on API_HOST:API_PORT with uvicorn."""

from __future__ import annotations

import uvicorn

from brokerflow.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "brokerflow.api:app",
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
