"""The order state machine (seed 002), as data: which status may follow which.

    PENDING ──> OPEN ──> PARTIALLY_FILLED ──> FILLED
       │          │  └──────────────────────> FILLED
       │          ├──> CANCELLED <── PARTIALLY_FILLED
       │          └──> EXPIRED   <── PARTIALLY_FILLED
       └──> REJECTED

A partially filled order can still be cancelled or expire (what is left is cancelled); FILLED,
CANCELLED, REJECTED and EXPIRED are final. Read models and the reconciler use
:func:`check_transition` so an out-of-order or duplicated event is caught, not applied.
"""

from __future__ import annotations

from brokerflow.errors import BrokerflowError
from brokerflow.schemas.orders import OrderStatus

__all__ = ["FINAL_STATUSES", "TRANSITIONS", "IllegalTransitionError", "check_transition"]

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.OPEN, OrderStatus.REJECTED}),
    OrderStatus.OPEN: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}

FINAL_STATUSES = frozenset(status for status, nxt in TRANSITIONS.items() if not nxt)


class IllegalTransitionError(BrokerflowError):
    def __init__(self, order_id: str, current: OrderStatus, new: OrderStatus) -> None:
        self.order_id, self.current, self.new = order_id, current, new
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (final)"
        super().__init__(
            f"order {order_id}: {current} cannot become {new}; from {current} it may become "
            f"{allowed}. The event is out of order or duplicated: replay from the topic."
        )


def check_transition(order_id: str, current: OrderStatus | None, new: OrderStatus) -> OrderStatus:
    """Return ``new`` if ``current -> new`` is allowed; an order's first status may be PENDING,
    or OPEN/REJECTED when the exchange is fed directly (no broker in front)."""
    if current is None:
        if new in (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.REJECTED):
            return new
        raise IllegalTransitionError(order_id, OrderStatus.PENDING, new)
    if new not in TRANSITIONS[current]:
        raise IllegalTransitionError(order_id, current, new)
    return new
