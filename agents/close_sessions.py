"""``close_sessions``: the session timer. Publishes ``CloseSession`` commands; touches no book.

Every ``EXCHANGE_SESSION_TIMER_S`` it asks :func:`~brokerflow.exchange.schedule.close_to_publish`
whether a session of the exchange calendar (``EXCHANGE_SESSION_OPEN`` to ``EXCHANGE_SESSION_CLOSE``
in ``EXCHANGE_SESSION_TIMEZONE``, Monday to Friday) has closed and the next one not opened yet; if
so it publishes one ``CloseSession`` per symbol in ``EXCHANGE_SESSION_SYMBOLS`` (B3 stocks; 24/7
crypto symbols have none) to the command topic, keyed by symbol, with the session date and the
close instant as event time. The expiry is then ordered with the orders in one log, and a replay
of that log expires exactly the same orders.

Replay-safe by construction: every worker runs the timer and may publish the same close (also
again after a restart); the matching agent applies the first close of a session date per symbol
and ignores the rest. It publishes with a plain idempotent producer: the close is new input to
the log, like a broker's order, not output of a transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from brokerflow.app import app, settings
from brokerflow.exchange.io import publish_commands
from brokerflow.exchange.schedule import close_to_publish
from brokerflow.schemas import CloseSession

__all__ = ["close_sessions", "published"]

log = logging.getLogger(__name__)

#: Session dates this process already published closes for.
published: set[date] = set()


@app.timer(interval=settings.exchange_session_timer_s)
async def close_sessions() -> None:
    symbols = settings.exchange_session_symbols
    if not symbols:
        return
    due = close_to_publish(
        datetime.now(UTC),
        settings.exchange_session_open,
        settings.exchange_session_close,
        settings.exchange_session_timezone,
    )
    if due is None or due[0] in published:
        return
    session_date, closes_at = due
    commands = [
        CloseSession(symbol=symbol, session_date=session_date, event_time=closes_at)
        for symbol in symbols
    ]
    await publish_commands(settings, commands)
    published.add(session_date)
    log.info("session %s closed for %s", session_date, ", ".join(symbols))
