from __future__ import annotations

import pytest

from brokerflow.order_state import FINAL_STATUSES, IllegalTransitionError, check_transition
from brokerflow.schemas.orders import OrderStatus as S


@pytest.mark.parametrize(
    "path",
    [
        [S.PENDING, S.OPEN, S.FILLED],
        [S.PENDING, S.OPEN, S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED],
        [S.PENDING, S.OPEN, S.PARTIALLY_FILLED, S.CANCELLED],
        [S.PENDING, S.OPEN, S.CANCELLED],
        [S.PENDING, S.OPEN, S.EXPIRED],
        [S.PENDING, S.REJECTED],
        [S.OPEN, S.FILLED],  # exchange fed directly, no broker PENDING
    ],
)
def test_seed_lifecycles_are_allowed(path: list[S]) -> None:
    current = None
    for status in path:
        current = check_transition("o-1", current, status)
    assert current == path[-1]


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.FILLED, S.CANCELLED),
        (S.CANCELLED, S.FILLED),
        (S.REJECTED, S.OPEN),
        (S.EXPIRED, S.PARTIALLY_FILLED),
        (S.PENDING, S.FILLED),
        (S.OPEN, S.PENDING),
        (S.PARTIALLY_FILLED, S.OPEN),
    ],
)
def test_illegal_transitions_name_the_order_and_the_way_out(current: S, new: S) -> None:
    with pytest.raises(IllegalTransitionError) as raised:
        check_transition("o-7", current, new)
    assert "o-7" in str(raised.value)
    assert f"{current} cannot become {new}" in str(raised.value)


def test_an_order_cannot_start_filled() -> None:
    with pytest.raises(IllegalTransitionError):
        check_transition("o-1", None, S.FILLED)


def test_final_statuses() -> None:
    assert {S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED} == FINAL_STATUSES
