"""Pure price-time-priority matching core (no I/O).

A reading guide:

* :mod:`~brokerflow.matching.rules`: :class:`SymbolRules` (tick, lot, price band, self-trade
  prevention) and the decimal <-> ticks/lots conversions.
* :mod:`~brokerflow.matching.commands`: what the engine accepts, in ticks and lots.
* :mod:`~brokerflow.matching.engine`: :class:`MatchingEngine`, one symbol's book; the event order
  and the persistence contract are documented there.
* :mod:`~brokerflow.matching.exchange`: :class:`Exchange`, one engine per symbol, decimals in.
* :mod:`~brokerflow.matching.wire`: :func:`to_wire` / :func:`to_json`, events to the wire shape.
* :mod:`~brokerflow.matching.replay`: ``brokerflow match``, a command tape in, an event tape out.

Nothing here imports Faust, Kafka clients or pydantic; agents own the I/O and call this core.
"""

from brokerflow.matching.book import Depth, PriceLevel, RestingOrder, TopOfBook
from brokerflow.matching.commands import (
    Amend,
    Cancel,
    CloseSession,
    Command,
    NewOrder,
    Reject,
    SetReferencePrice,
)
from brokerflow.matching.engine import EngineState, MatchingEngine
from brokerflow.matching.events import (
    Event,
    Reason,
    event_account_id,
    event_order_id,
    event_sequence,
    event_type,
)
from brokerflow.matching.exchange import (
    EPOCH_TIME,
    Exchange,
    amend_command,
    format_event_time,
    place_command,
)
from brokerflow.matching.rules import DEFAULT_RULES, SelfTradePrevention, SymbolRules
from brokerflow.matching.wire import to_json, to_json_lines, to_wire

__all__ = [
    "DEFAULT_RULES",
    "EPOCH_TIME",
    "Amend",
    "Cancel",
    "CloseSession",
    "Command",
    "Depth",
    "EngineState",
    "Event",
    "Exchange",
    "MatchingEngine",
    "NewOrder",
    "PriceLevel",
    "Reason",
    "Reject",
    "RestingOrder",
    "SelfTradePrevention",
    "SetReferencePrice",
    "SymbolRules",
    "TopOfBook",
    "amend_command",
    "event_account_id",
    "event_order_id",
    "event_sequence",
    "event_type",
    "format_event_time",
    "place_command",
    "to_json",
    "to_json_lines",
    "to_wire",
]
