"""The read-model folds on hand-written events, against documents computed by hand.

The story: account a1 (user u1) deposits 100,000.00 BRL, buys 300 PETR4 at a 38.60 limit (filled
100 @ 38.52 then 200 @ 38.56), sells 100 @ 39.00 (cash unsettled until D+2), and the sale
settles. B3 fees are 0.03 % of notional per side, rounded half-even to the centavo:
3852 x 0.0003 = 1.1556 -> 1.16; 7712 x 0.0003 = 2.3136 -> 2.31; 3900 x 0.0003 = 1.17.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from brokerflow.projections.folds import (
    GapBuffer,
    LedgerStep,
    attach_fees,
    fold_account,
    fold_order,
    fold_position,
    fold_refusal,
    ledger_step,
)
from brokerflow.schemas.accounts import RequestRefused
from brokerflow.schemas.ledger import (
    AccountOpened,
    CashDeposited,
    CashSettled,
    CashWithdrawn,
    CustodyTransferredIn,
    FillSettled,
    FundsHeld,
    FundsReleased,
    HoldReleaseReason,
    SharesHeld,
    SharesReleased,
)
from brokerflow.schemas.orders import (
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pending_order(**changes: Any) -> dict[str, Any]:
    """The document the API inserts before it publishes the request."""
    doc = {
        "_id": "o1",
        "orderId": "o1",
        "userId": "u1",
        "accountId": "a1",
        "symbol": "PETR4",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "300",
        "price": "38.60",
        "status": "PENDING",
        "filledQuantity": "0",
        "leavesQuantity": "300",
        "averagePrice": None,
        "fills": [],
        "rejectReason": None,
        "rejectMessage": None,
        "idempotencyKey": "k-1",
        "createdAt": "2026-06-25T13:00:00.000000Z",
        "updatedAt": "2026-06-25T13:00:00.000000Z",
        "lastSequence": -1,
    }
    doc.update(changes)
    return doc


def accepted(sequence: int = 10) -> OrderAccepted:
    return OrderAccepted(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=sequence,
        filled_quantity=Decimal(0),
        leaves_quantity=Decimal(300),
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=Decimal(300),
        price=Decimal("38.60"),
        event_time=at(1),
    )


def first_fill(sequence: int = 12) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=sequence,
        filled_quantity=Decimal(100),
        leaves_quantity=Decimal(200),
        trade_id="PETR4-T1",
        last_price=Decimal("38.52"),
        last_quantity=Decimal(100),
        event_time=at(2),
    )


def second_fill(sequence: int = 15) -> OrderFilled:
    return OrderFilled(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=sequence,
        filled_quantity=Decimal(300),
        leaves_quantity=Decimal(0),
        trade_id="PETR4-T2",
        last_price=Decimal("38.56"),
        last_quantity=Decimal(200),
        event_time=at(3),
    )


def reject(reason: str, detail: str, sequence: int, filled: str = "0", leaves: str = "0"):
    return OrderRejected(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=sequence,
        filled_quantity=Decimal(filled),
        leaves_quantity=Decimal(leaves),
        reason=reason,
        detail=detail,
        event_time=at(4),
    )


FILL_1 = {
    "executionId": "PETR4-T1",
    "price": "38.52",
    "quantity": "100",
    "fees": None,
    "time": "2026-06-25T13:00:02.000000Z",
}
FILL_2 = {
    "executionId": "PETR4-T2",
    "price": "38.56",
    "quantity": "200",
    "fees": None,
    "time": "2026-06-25T13:00:03.000000Z",
}


# --- orders ------------------------------------------------------------------------------------


def test_accept_then_partial_fill_then_fill() -> None:
    opened = fold_order(pending_order(), accepted())
    assert opened == pending_order(
        status="OPEN", updatedAt="2026-06-25T13:00:01.000000Z", lastSequence=10
    )

    partial = fold_order(opened, first_fill())
    assert partial == pending_order(
        status="PARTIALLY_FILLED",
        filledQuantity="100",
        leavesQuantity="200",
        averagePrice="38.52000000",
        fills=[FILL_1],
        updatedAt="2026-06-25T13:00:02.000000Z",
        lastSequence=12,
    )

    # (38.52 x 100 + 38.56 x 200) / 300 = 11564 / 300 = 38.546666... -> 38.54666667
    filled = fold_order(partial, second_fill())
    assert filled == pending_order(
        status="FILLED",
        filledQuantity="300",
        leavesQuantity="0",
        averagePrice="38.54666667",
        fills=[FILL_1, FILL_2],
        updatedAt="2026-06-25T13:00:03.000000Z",
        lastSequence=15,
    )


def test_a_duplicate_or_older_order_event_changes_nothing() -> None:
    partial = fold_order(fold_order(pending_order(), accepted()), first_fill())
    assert partial is not None
    assert fold_order(partial, first_fill()) is None  # the same event again
    assert fold_order(partial, accepted()) is None  # an older one


def test_the_input_document_is_not_modified() -> None:
    opened = fold_order(pending_order(), accepted())
    assert opened is not None
    fold_order(opened, first_fill())
    assert opened["fills"] == []
    assert opened["status"] == "OPEN"


def test_an_order_without_a_document_is_not_ours() -> None:
    assert fold_order(None, accepted()) is None


def test_fees_known_before_the_fill_go_into_it() -> None:
    opened = fold_order(pending_order(), accepted())
    partial = fold_order(opened, first_fill(), Decimal("1.16"))
    assert partial is not None
    assert partial["fills"] == [{**FILL_1, "fees": "1.16"}]


def test_reject_of_a_placement_rejects_the_order() -> None:
    event = reject("PRICE_BAND", "PlaceOrder: price 50.00 is outside the band", sequence=5)
    assert fold_order(pending_order(), event) == pending_order(
        status="REJECTED",
        leavesQuantity="0",
        rejectReason="PRICE_BAND",
        rejectMessage="PlaceOrder: price 50.00 is outside the band",
        updatedAt="2026-06-25T13:00:04.000000Z",
        lastSequence=5,
    )


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        ("UNKNOWN_ORDER", "CancelOrder: order 'o1' is no longer resting"),
        ("AMEND_BELOW_FILLED", "AmendOrder: new quantity 100 does not exceed the filled 100"),
        ("PRICE_BAND", "AmendOrder: price 50.00 is outside the band; order unchanged"),
    ],
)
def test_a_lost_cancel_or_amend_leaves_the_order_as_it_is(reason: str, detail: str) -> None:
    partial = fold_order(fold_order(pending_order(), accepted()), first_fill())
    assert partial is not None
    assert fold_order(partial, reject(reason, detail, 20, "100", "200")) is None


def test_a_cancel_that_lost_to_the_fill_leaves_the_filled_order_filled() -> None:
    filled = fold_order(
        fold_order(fold_order(pending_order(), accepted()), first_fill()), second_fill()
    )
    assert filled is not None
    late = reject("UNKNOWN_ORDER", "CancelOrder: order 'o1' is no longer resting", 16)
    assert fold_order(filled, late) is None


def test_amend_changes_quantity_price_and_leaves() -> None:
    opened = fold_order(pending_order(), accepted())
    event = OrderAmended(
        order_id="o1",
        account_id="a1",
        symbol="PETR4",
        sequence=11,
        status=OrderStatus.OPEN,
        filled_quantity=Decimal(0),
        leaves_quantity=Decimal(200),
        quantity=Decimal(200),
        price=Decimal("38.55"),
        kept_priority=False,
        event_time=at(5),
    )
    assert fold_order(opened, event) == pending_order(
        status="OPEN",
        quantity="200",
        price="38.55",
        leavesQuantity="200",
        updatedAt="2026-06-25T13:00:05.000000Z",
        lastSequence=11,
    )


def test_cancel_and_expiry_close_the_order_with_what_was_filled() -> None:
    partial = fold_order(fold_order(pending_order(), accepted()), first_fill())
    cancelled = OrderCancelled(
        order_id="o1",
        symbol="PETR4",
        sequence=16,
        filled_quantity=Decimal(100),
        leaves_quantity=Decimal(0),
        reason="USER",
        cancelled_quantity=Decimal(200),
        event_time=at(6),
    )
    result = fold_order(partial, cancelled)
    assert result is not None
    assert (result["status"], result["filledQuantity"], result["leavesQuantity"]) == (
        "CANCELLED",
        "100",
        "0",
    )
    assert result["fills"] == [FILL_1]
    assert result["averagePrice"] == "38.52000000"

    expired = OrderExpired(
        order_id="o1",
        symbol="PETR4",
        sequence=16,
        filled_quantity=Decimal(100),
        leaves_quantity=Decimal(0),
        expired_quantity=Decimal(200),
        event_time=at(6),
    )
    result = fold_order(partial, expired)
    assert result is not None
    assert (result["status"], result["leavesQuantity"], result["lastSequence"]) == (
        "EXPIRED",
        "0",
        16,
    )


# --- fees and refusals -----------------------------------------------------------------------


def fill_settled_1(sequence: int = 3) -> FillSettled:
    # BUY 100 @ 38.52: 3852.00 + fees 1.16; the hold used is 100 x 38.60 + 1.16 = 3861.16.
    return FillSettled(
        account_id="a1",
        sequence=sequence,
        entry_id=f"a1:{sequence}",
        currency="BRL",
        trade_id="PETR4-T1",
        order_id="o1",
        symbol="PETR4",
        side=Side.BUY,
        quantity=Decimal(100),
        price=Decimal("38.52"),
        fees=Decimal("1.16"),
        cash_delta=Decimal("-3853.16"),
        position_delta=Decimal(100),
        cash_hold_released=Decimal("3861.16"),
        shares_hold_released=Decimal(0),
        position_quantity=Decimal(100),
        average_price=Decimal("38.5316"),
        realized_pnl=Decimal(0),
        event_time=at(2),
    )


def test_fill_settled_attaches_fees_to_its_fill_once() -> None:
    filled = fold_order(
        fold_order(fold_order(pending_order(), accepted()), first_fill()), second_fill()
    )
    with_fees = attach_fees(filled, fill_settled_1())
    assert with_fees is not None
    assert with_fees["fills"] == [{**FILL_1, "fees": "1.16"}, FILL_2]
    assert attach_fees(with_fees, fill_settled_1()) is None  # again: nothing to do


def test_fees_for_a_fill_not_projected_yet_change_nothing() -> None:
    assert attach_fees(fold_order(pending_order(), accepted()), fill_settled_1()) is None
    assert attach_fees(None, fill_settled_1()) is None


def refused(command: str = "RequestOrder") -> RequestRefused:
    return RequestRefused(
        request_id="o1",
        account_id="a1",
        command=command,
        order_id="o1",
        code="INSUFFICIENT_BUYING_POWER",
        message="buying power 100.00 BRL, the order needs 11583.47 BRL",
        event_time=at(1),
    )


def test_a_refused_order_request_rejects_the_pending_order() -> None:
    assert fold_refusal(pending_order(), refused()) == pending_order(
        status="REJECTED",
        leavesQuantity="0",
        rejectReason="INSUFFICIENT_BUYING_POWER",
        rejectMessage="buying power 100.00 BRL, the order needs 11583.47 BRL",
        updatedAt="2026-06-25T13:00:01.000000Z",
    )


def test_a_refusal_changes_only_a_pending_order_and_only_for_a_placement() -> None:
    assert fold_refusal(pending_order(status="OPEN"), refused()) is None
    assert fold_refusal(pending_order(status="REJECTED"), refused()) is None
    assert fold_refusal(pending_order(), refused("RequestCancel")) is None
    assert fold_refusal(None, refused()) is None


def test_a_resent_copy_refused_as_order_id_in_use_leaves_the_order_alone() -> None:
    """The API sends a PENDING order again on a retry; the agent refuses the copy, the first
    copy stands."""
    copy_refused = refused().model_copy(update={"code": "ORDER_ID_IN_USE"})
    assert fold_refusal(pending_order(), copy_refused) is None


# --- accounts and positions --------------------------------------------------------------------


def ledger_story() -> list[Any]:
    """a1's ledger, entries 0-7."""
    common = {"account_id": "a1", "currency": "BRL"}

    def base(sequence: int, seconds: int) -> dict[str, Any]:
        return {
            **common,
            "sequence": sequence,
            "entry_id": f"a1:{sequence}",
            "event_time": at(seconds),
        }

    return [
        AccountOpened(**base(0, 0), user_id="u1"),
        CashDeposited(**base(1, 0), amount=Decimal("100000.00")),
        # 300 x 38.60 = 11580.00 + fees 3.47 (11580 x 0.0003 = 3.474)
        FundsHeld(**base(2, 1), order_id="o1", amount=Decimal("11583.47")),
        fill_settled_1(),
        # BUY 200 @ 38.56: 7712.00 + 2.31; the order is done: the rest of the hold, 7722.31,
        # is released with it (7720.00 + 2.31 used, price improvement back to free)
        FillSettled(
            **base(4, 3),
            trade_id="PETR4-T2",
            order_id="o1",
            symbol="PETR4",
            side=Side.BUY,
            quantity=Decimal(200),
            price=Decimal("38.56"),
            fees=Decimal("2.31"),
            cash_delta=Decimal("-7714.31"),
            position_delta=Decimal(200),
            cash_hold_released=Decimal("7722.31"),
            shares_hold_released=Decimal(0),
            position_quantity=Decimal(300),
            average_price=Decimal("38.55823333"),  # (3853.16 + 7714.31) / 300
            realized_pnl=Decimal(0),
        ),
        SharesHeld(**base(5, 10), order_id="o2", symbol="PETR4", quantity=Decimal(100)),
        # SELL 100 @ 39.00: 3900.00 - 1.17, unsettled until D+2 (Monday 2026-06-29);
        # P&L (39.00 - 38.55823333) x 100 - 1.17 = 43.01 (rounded)
        FillSettled(
            **base(6, 11),
            trade_id="PETR4-T3",
            order_id="o2",
            symbol="PETR4",
            side=Side.SELL,
            quantity=Decimal(100),
            price=Decimal("39.00"),
            fees=Decimal("1.17"),
            cash_delta=Decimal("3898.83"),
            position_delta=Decimal(-100),
            cash_hold_released=Decimal(0),
            shares_hold_released=Decimal(100),
            position_quantity=Decimal(200),
            average_price=Decimal("38.55823333"),
            realized_pnl=Decimal("43.01"),
            settlement_date=date(2026, 6, 29),
        ),
        CashSettled(
            **base(7, 4 * 86400),
            trade_id="PETR4-T3",
            amount=Decimal("3898.83"),
            settlement_date=date(2026, 6, 29),
        ),
    ]


def fold_all(events: list[Any]) -> dict[str, Any] | None:
    doc = None
    for event in events:
        doc = fold_account(doc, event)
    return doc


def test_account_after_the_buy() -> None:
    # cash 100000.00 - 3853.16 - 7714.31 = 88432.53; held 11583.47 - 3861.16 - 7722.31 = 0.00
    assert fold_all(ledger_story()[:5]) == {
        "_id": "a1",
        "accountId": "a1",
        "userId": "u1",
        "sequence": 4,
        "balances": {"BRL": {"cash": "88432.53", "held": "0.00", "unsettled": "0"}},
        "sharesHeld": {},
    }


def test_a_d_plus_2_sale_is_unsettled_until_cash_settled() -> None:
    story = ledger_story()
    held = fold_all(story[:6])
    assert held is not None
    assert held["sharesHeld"] == {"PETR4": "100"}
    sold = fold_account(held, story[6])
    assert sold is not None
    assert sold["balances"] == {"BRL": {"cash": "88432.53", "held": "0.00", "unsettled": "3898.83"}}
    assert sold["sharesHeld"] == {}  # the hold of 100 is used up by the sale
    settled = fold_account(sold, story[7])
    # cash 88432.53 + 3898.83 = 92331.36
    assert settled == {
        "_id": "a1",
        "accountId": "a1",
        "userId": "u1",
        "sequence": 7,
        "balances": {"BRL": {"cash": "92331.36", "held": "0.00", "unsettled": "0.00"}},
        "sharesHeld": {},
    }


def test_withdrawals_releases_and_share_releases() -> None:
    story = ledger_story()
    opened = fold_all(story[:2])
    common = {"account_id": "a1", "currency": "BRL", "event_time": at(20)}
    doc = fold_account(
        opened, CashWithdrawn(**common, sequence=2, entry_id="a1:2", amount=Decimal("250.50"))
    )
    doc = fold_account(
        doc,
        FundsHeld(**common, sequence=3, entry_id="a1:3", order_id="o9", amount=Decimal("1000.00")),
    )
    doc = fold_account(
        doc,
        FundsReleased(
            **common,
            sequence=4,
            entry_id="a1:4",
            order_id="o9",
            amount=Decimal("400.00"),
            reason=HoldReleaseReason.ORDER_CANCELLED,
        ),
    )
    doc = fold_account(
        doc,
        SharesHeld(
            **common,
            sequence=5,
            entry_id="a1:5",
            order_id="o8",
            symbol="VALE3",
            quantity=Decimal(300),
        ),
    )
    doc = fold_account(
        doc,
        SharesReleased(
            **common,
            sequence=6,
            entry_id="a1:6",
            order_id="o8",
            symbol="VALE3",
            quantity=Decimal(100),
            reason=HoldReleaseReason.ORDER_AMENDED,
        ),
    )
    assert doc is not None
    # cash 100000.00 - 250.50 = 99749.50; held 1000.00 - 400.00 = 600.00; VALE3 300 - 100
    assert doc["balances"] == {"BRL": {"cash": "99749.50", "held": "600.00", "unsettled": "0"}}
    assert doc["sharesHeld"] == {"VALE3": "200"}
    assert doc["sequence"] == 6


def test_ledger_entries_apply_only_in_sequence() -> None:
    story = ledger_story()
    doc = fold_all(story[:3])
    assert ledger_step(doc, story[2]) is LedgerStep.DUPLICATE
    assert ledger_step(doc, story[3]) is LedgerStep.APPLY
    assert ledger_step(doc, story[4]) is LedgerStep.GAP
    assert fold_account(doc, story[2]) is None
    assert fold_account(doc, story[4]) is None
    assert ledger_step(None, story[1]) is LedgerStep.GAP  # nothing before AccountOpened


def test_positions_follow_the_fills_and_accumulate_realized_pnl() -> None:
    story = ledger_story()
    position = None
    for event in (story[3], story[4], story[6]):
        position = fold_position(position, event)
    assert position == {
        "_id": "a1|PETR4",
        "accountId": "a1",
        "symbol": "PETR4",
        "currency": "BRL",
        "quantity": "200",
        "averagePrice": "38.55823333",
        "realizedPnl": "43.01",
        "updatedAt": "2026-06-25T13:00:11.000000Z",
        "sequence": 6,
    }
    # Replayed: an entry at or below the position's sequence changes nothing (no double P&L).
    assert fold_position(position, story[6]) is None
    assert fold_position(position, story[3]) is None


def test_a_custody_transfer_opens_a_position_at_its_cost_basis() -> None:
    event = CustodyTransferredIn(
        account_id="a1",
        sequence=8,
        entry_id="a1:8",
        currency="BRL",
        symbol="VALE3",
        quantity=Decimal(200),
        price=Decimal("61.20"),
        position_quantity=Decimal(200),
        average_price=Decimal("61.20"),
        event_time=at(30),
    )
    position = fold_position(None, event)
    assert position == {
        "_id": "a1|VALE3",
        "accountId": "a1",
        "symbol": "VALE3",
        "currency": "BRL",
        "quantity": "200",
        "averagePrice": "61.20",
        "realizedPnl": "0",
        "updatedAt": "2026-06-25T13:00:30.000000Z",
        "sequence": 8,
    }
    assert fold_position(position, event) is None
    account = fold_all(ledger_story())
    moved = fold_account(account, event)
    assert moved is not None
    assert moved["sequence"] == 8
    assert moved["balances"] == account["balances"]  # type: ignore[index]


# --- gaps ------------------------------------------------------------------------------------


def test_an_early_ledger_entry_is_held_until_the_missing_one_arrives() -> None:
    story = ledger_story()
    buffer: GapBuffer[str, Any] = GapBuffer(lambda event: event.sequence)
    first = buffer.feed("a1", 0, story[:2])
    assert [e.sequence for e in first.ready] == [0, 1]

    # 3 and 4 come before 2: held, nothing applies.
    early = buffer.feed("a1", 2, [story[3], story[4]])
    assert (early.ready, [e.sequence for e in early.held]) == ([], [3, 4])
    assert buffer.missing("a1") == 3
    assert len(buffer) == 2

    # 2 arrives (with a duplicate of 1 and of 3): 2, 3, 4 apply in order.
    late = buffer.feed("a1", 2, [story[1], story[2], story[3]])
    assert [e.sequence for e in late.ready] == [2, 3, 4]
    assert [e.sequence for e in late.duplicates] == [1, 3]
    assert len(buffer) == 0
    assert buffer.missing("a1") is None


def test_held_entries_applied_by_someone_else_are_dropped_as_duplicates() -> None:
    story = ledger_story()
    buffer: GapBuffer[str, Any] = GapBuffer(lambda event: event.sequence)
    buffer.feed("a1", 2, [story[4], story[5]])
    out = buffer.feed("a1", 5, [story[6]])  # the document is at 4 now (another reader)
    assert [e.sequence for e in out.duplicates] == [4]
    assert [e.sequence for e in out.ready] == [5, 6]


def test_discard_and_restore() -> None:
    story = ledger_story()
    buffer: GapBuffer[str, Any] = GapBuffer(lambda event: event.sequence)
    buffer.feed("a1", 2, [story[4], story[5]])
    snapshot = buffer.snapshot()
    assert buffer.discard(lambda event: event.sequence == 5) == 1
    assert [e.sequence for _, e in buffer.held()] == [4]
    buffer.restore(snapshot)
    assert sorted(e.sequence for _, e in buffer.held()) == [4, 5]


def test_an_orders_cache_version_moves_with_its_sequence_and_an_end_outranks_its_state() -> None:
    from brokerflow.projections.cache import order_version

    pending = {"status": "PENDING", "lastSequence": -1}
    refused = {"status": "REJECTED", "lastSequence": -1}
    opened = {"status": "OPEN", "lastSequence": 3}
    filled = {"status": "FILLED", "lastSequence": 7}
    versions = [order_version(d) for d in (pending, refused, opened, filled)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 4
