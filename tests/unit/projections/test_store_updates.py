"""The conditional updates the projector sends, built from (as read, as folded) documents."""

from __future__ import annotations

from typing import Any

from brokerflow.projections.store import fee_stash_update, order_updates, sequenced_upsert


def order(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "o1",
        "status": "OPEN",
        "filledQuantity": "0",
        "leavesQuantity": "300",
        "averagePrice": None,
        "fills": [],
        "updatedAt": "2026-06-25T13:00:01.000000Z",
        "lastSequence": 10,
    }
    doc.update(changes)
    return doc


FILL_1 = {
    "executionId": "PETR4-T1",
    "price": "38.52",
    "quantity": "100",
    "fees": None,
    "time": "t1",
}
FILL_2 = {
    "executionId": "PETR4-T2",
    "price": "38.56",
    "quantity": "200",
    "fees": None,
    "time": "t2",
}


def test_a_fill_is_pushed_only_onto_the_state_it_was_folded_from() -> None:
    before = order(fills=[FILL_1], filledQuantity="100", status="PARTIALLY_FILLED")
    after = order(
        fills=[FILL_1, FILL_2],
        status="FILLED",
        filledQuantity="300",
        leavesQuantity="0",
        averagePrice="38.54666667",
        updatedAt="2026-06-25T13:00:03.000000Z",
        lastSequence=15,
    )
    state, fees = order_updates(before, after)
    assert state == {
        "q": {
            "_id": "o1",
            "lastSequence": 10,
            "status": "PARTIALLY_FILLED",
            "$nor": [{"fills.executionId": {"$in": ["PETR4-T2"]}}],
        },
        "u": {
            "$set": {
                "status": "FILLED",
                "filledQuantity": "300",
                "leavesQuantity": "0",
                "averagePrice": "38.54666667",
                "updatedAt": "2026-06-25T13:00:03.000000Z",
                "lastSequence": 15,
            },
            "$push": {"fills": {"$each": [FILL_2]}},
        },
        "upsert": False,
    }
    assert fees == []


def test_fees_of_an_earlier_fill_are_set_at_its_index() -> None:
    before = order(fills=[FILL_1, FILL_2])
    after = order(fills=[FILL_1, {**FILL_2, "fees": "2.31"}])
    state, fees = order_updates(before, after)
    assert state is None
    assert fees == [
        {
            "q": {"_id": "o1", "fills.1.executionId": "PETR4-T2"},
            "u": {"$set": {"fills.1.fees": "2.31"}},
            "upsert": False,
        }
    ]


def test_nothing_changed_nothing_written() -> None:
    assert order_updates(order(fills=[FILL_1]), order(fills=[FILL_1])) == (None, [])


def test_a_refusal_is_guarded_by_the_pending_status_it_was_folded_from() -> None:
    before = order(status="PENDING", lastSequence=-1)
    after = order(status="REJECTED", lastSequence=-1, leavesQuantity="0", rejectReason="X")
    state, _ = order_updates(before, after)
    assert state is not None
    assert state["q"] == {"_id": "o1", "lastSequence": -1, "status": "PENDING"}
    assert state["u"] == {
        "$set": {"status": "REJECTED", "leavesQuantity": "0", "rejectReason": "X"}
    }


def test_accounts_and_positions_are_upserted_below_their_sequence() -> None:
    doc = {"_id": "a1", "accountId": "a1", "sequence": 7, "balances": {}}
    assert sequenced_upsert(doc) == {
        "q": {"_id": "a1", "sequence": {"$lt": 7}},
        "u": {"$set": {"accountId": "a1", "sequence": 7, "balances": {}}},
        "upsert": True,
    }


def test_fee_stash() -> None:
    assert fee_stash_update("o1|T1", "o1", "T1", "1.16") == {
        "q": {"_id": "o1|T1"},
        "u": {"$set": {"orderId": "o1", "executionId": "T1", "fees": "1.16"}},
        "upsert": True,
    }
