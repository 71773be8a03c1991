"""The reconciler's comparison, on an account driven through the real broker core.

The account (support.ACCOUNT): opened, 10,000.00 BRL deposited, 300 PETR4 moved in at 30.00,
a buy of 100 @ 38.50 (held 3850.00 + fee 1.16 = 3851.16) filled 60, a sell of 50 @ 39.00 (50
shares held). Its ledger is folded with the projector's folds; the agent's copy is the core's
state. Each test breaks one field of one copy and expects exactly that discrepancy.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from brokerflow.broker import AccountState
from brokerflow.broker.state import Cash
from brokerflow.reconciler.compare import (
    Discrepancy,
    Field,
    LedgerFold,
    Outcome,
    Source,
    check_agent,
    check_read_model,
)
from brokerflow.reconciler.orders import cancel_request_of, order_request_of, split_queued
from brokerflow.schemas.orders import OrderType, Side

from .support import ACCOUNT, T0, accepted, at, custody, deposit, fill, opened, order

LONG_AGO = T0 + timedelta(days=1)  # every entry is older than the grace period's start


def story() -> tuple[list[Any], AccountState]:
    account = opened()
    ledger = list(account.last.ledger)
    for step in (
        deposit("10000.00"),
        custody("PETR4", "300", "30.00"),
        order("b1", "BUY", "100", "38.50"),
    ):
        ledger += account.request(step).ledger
    ledger += account.report(accepted("b1", 1, "BUY", "100", "38.50")).ledger
    ledger += account.report(fill("b1", 2, "60", "38.50", filled="60", leaves="40")).ledger
    ledger += account.request(order("s1", "SELL", "50", "39.00", when=at(5))).ledger
    return ledger, account.live


def folded(ledger: list[Any], wanted: dict[str, set[int]] | None = None) -> LedgerFold:
    fold = LedgerFold(wanted)
    for entry in ledger:
        fold.apply(entry)
    return fold


def read_models(fold: LedgerFold) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    latest = fold.latest(ACCOUNT)
    assert latest is not None
    return copy.deepcopy(latest.account), copy.deepcopy(dict(latest.positions))


def test_the_story_is_what_the_hand_computation_says() -> None:
    ledger, state = story()
    account, positions = read_models(folded(ledger))
    # 10000.00 - 60 x 38.50 (2310.00) - fee 0.69 (2310 x 0.0003 = 0.693) = 7689.31; the hold
    # of 3851.16 less what the fill used (2310.00 + 0.69) = 1540.47.
    assert account["balances"]["BRL"] == {"cash": "7689.31", "held": "1540.47", "unsettled": "0"}
    assert account["sharesHeld"] == {"PETR4": "50"}
    assert Decimal(positions["PETR4"]["quantity"]) == 360
    assert (state.cash_in("BRL").settled, state.cash_in("BRL").held) == (
        Decimal("7689.31"),
        Decimal("1540.47"),
    )


def test_copies_that_agree_have_no_discrepancy() -> None:
    ledger, state = story()
    fold = folded(ledger)
    account, positions = read_models(fold)
    assert check_read_model(fold, ACCOUNT, account, positions, settled_before=LONG_AGO) == (
        Outcome.COMPARED,
        [],
    )
    assert check_agent(fold, ACCOUNT, state, settled_before=LONG_AGO) == (Outcome.COMPARED, [])


@pytest.mark.parametrize(
    ("path", "value", "kind", "expected"),
    [
        (("balances", "BRL", "cash"), "7689.32", Field.CASH, "7689.31"),
        (("balances", "BRL", "held"), "0", Field.HELD, "1540.47"),
        (("balances", "BRL", "unsettled"), "5.00", Field.UNSETTLED, "0"),
        (("sharesHeld", "PETR4"), "40", Field.SHARES_HELD, "50"),
    ],
)
def test_a_tampered_account_field_is_named(
    path: tuple[str, ...], value: str, kind: Field, expected: str
) -> None:
    ledger, _ = story()
    fold = folded(ledger)
    account, positions = read_models(fold)
    target = account
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    outcome, found = check_read_model(fold, ACCOUNT, account, positions, settled_before=LONG_AGO)
    assert outcome is Outcome.COMPARED
    assert found == [Discrepancy(Source.READ_MODEL, ACCOUNT, kind, ".".join(path), expected, value)]


@pytest.mark.parametrize(
    ("name", "value", "kind", "expected"),
    [
        ("quantity", "361", Field.POSITION_QUANTITY, "360"),
        ("averagePrice", "31.00", Field.AVERAGE_PRICE, None),
        ("realizedPnl", "1.00", Field.REALIZED_PNL, "0"),
    ],
)
def test_a_tampered_position_field_is_named(
    name: str, value: str, kind: Field, expected: str | None
) -> None:
    ledger, _ = story()
    fold = folded(ledger)
    account, positions = read_models(fold)
    expected = expected or positions["PETR4"]["averagePrice"]
    positions["PETR4"][name] = value
    _, found = check_read_model(fold, ACCOUNT, account, positions, settled_before=LONG_AGO)
    assert found == [
        Discrepancy(Source.READ_MODEL, ACCOUNT, kind, f"positions.PETR4.{name}", expected, value)
    ]


def test_missing_documents_count_only_after_the_grace_period() -> None:
    ledger, _ = story()
    fold = folded(ledger)
    account, _ = read_models(fold)
    sequence = fold.latest(ACCOUNT).sequence  # type: ignore[union-attr]
    assert check_read_model(fold, ACCOUNT, None, {}, settled_before=LONG_AGO) == (
        Outcome.MISSING,
        [
            Discrepancy(
                Source.READ_MODEL,
                ACCOUNT,
                Field.MISSING_DOCUMENT,
                "accounts",
                f"sequence {sequence}",
                None,
            )
        ],
    )
    assert check_read_model(fold, ACCOUNT, None, {}, settled_before=T0 - timedelta(1)) == (
        Outcome.RECENT,
        [],
    )
    _, found = check_read_model(fold, ACCOUNT, account, {}, settled_before=LONG_AGO)
    assert [(d.field, d.path) for d in found] == [(Field.MISSING_DOCUMENT, "positions.PETR4")]
    assert check_agent(fold, ACCOUNT, None, settled_before=LONG_AGO)[0] is Outcome.MISSING


def test_a_copy_behind_the_ledger_is_compared_at_its_own_sequence() -> None:
    """A projector that lags is no false alarm, and a tampered lagging copy is still caught."""
    ledger, _ = story()
    earlier = folded(ledger[:3])  # opened, deposited, custody in
    behind, behind_positions = read_models(earlier)
    fold = folded(ledger, {ACCOUNT: {int(behind["sequence"])}})
    assert check_read_model(fold, ACCOUNT, behind, behind_positions, settled_before=LONG_AGO) == (
        Outcome.BEHIND,
        [],
    )
    behind["balances"]["BRL"]["cash"] = "9999.99"
    _, found = check_read_model(fold, ACCOUNT, behind, behind_positions, settled_before=LONG_AGO)
    assert [(d.field, d.expected, d.found) for d in found] == [(Field.CASH, "10000.00", "9999.99")]


def test_a_copy_ahead_of_the_ledger_read_is_skipped() -> None:
    ledger, _ = story()
    fold = folded(ledger[:-1])
    account, positions = read_models(folded(ledger))
    account["balances"]["BRL"]["cash"] = "1"
    assert check_read_model(fold, ACCOUNT, account, positions, settled_before=LONG_AGO) == (
        Outcome.AHEAD,
        [],
    )


@pytest.mark.parametrize(
    ("change", "kind", "path"),
    [
        (
            {"cash": {"BRL": Cash(Decimal("7689.30"), Decimal(0), Decimal("1540.47"))}},
            Field.CASH,
            "balances.BRL.cash",
        ),
        (
            {"cash": {"BRL": Cash(Decimal("7689.31"), Decimal(0), Decimal("1540.00"))}},
            Field.HELD,
            "balances.BRL.held",
        ),
        (
            {"cash": {"BRL": Cash(Decimal("7689.31"), Decimal(1), Decimal("1540.47"))}},
            Field.UNSETTLED,
            "balances.BRL.unsettled",
        ),
    ],
)
def test_the_agents_cash_is_compared(change: dict[str, Any], kind: Field, path: str) -> None:
    ledger, state = story()
    fold = folded(ledger)
    _, found = check_agent(fold, ACCOUNT, replace(state, **change), settled_before=LONG_AGO)
    assert [(d.source, d.field, d.path) for d in found] == [(Source.AGENT, kind, path)]


def test_the_agents_positions_are_compared() -> None:
    ledger, state = story()
    fold = folded(ledger)
    petr4 = state.positions["PETR4"]
    broken = replace(
        state, positions={"PETR4": replace(petr4, quantity=Decimal(359), held=Decimal(49))}
    )
    _, found = check_agent(fold, ACCOUNT, broken, settled_before=LONG_AGO)
    assert [(d.field, d.path, d.expected, d.found) for d in found] == [
        (Field.SHARES_HELD, "sharesHeld.PETR4", "50", "49"),
        (Field.POSITION_QUANTITY, "positions.PETR4.quantity", "360", "359"),
    ]


def test_ledger_entries_out_of_sequence_are_counted_not_applied() -> None:
    ledger, _ = story()
    fold = folded([*ledger, ledger[2], ledger[-1]])
    assert fold.out_of_sequence == 2
    assert fold.latest(ACCOUNT).sequence == ledger[-1].sequence  # type: ignore[union-attr]


# --- stuck orders ------------------------------------------------------------------------------


def test_a_pending_order_document_becomes_its_request_again() -> None:
    document = {
        "_id": "o-1",
        "orderId": "o-1",
        "accountId": "acc-1",
        "symbol": "PETR4",
        "side": "BUY",
        "type": "MARKET",
        "timeInForce": "DAY",
        "quantity": "100",
        "price": None,
        "marketPrice": "38.12",
        "idempotencyKey": "k-1",
        "status": "PENDING",
        "createdAt": "2026-06-25T13:00:00.123000Z",
    }
    request = order_request_of(document)
    assert (request.request_id, request.order_id, request.account_id) == ("o-1", "o-1", "acc-1")
    assert (request.side, request.order_type, request.quantity) == (
        Side.BUY,
        OrderType.MARKET,
        Decimal(100),
    )
    assert request.market_price == Decimal("38.12")
    assert request.idempotency_key == "k-1"
    assert request.event_time == T0.replace(microsecond=123000)
    cancel = cancel_request_of(
        {**document, "cancelRequestedAt": "2026-06-25T13:01:00.000000Z", "cancelRequestId": "c-9"}
    )
    assert (cancel.request_id, cancel.order_id, cancel.event_time) == (
        "c-9",
        "o-1",
        T0 + timedelta(minutes=1),
    )


def test_requests_on_a_partition_the_agent_trails_are_queued_not_resent() -> None:
    def request(order_id: str, account_id: str) -> Any:
        return order_request_of(
            {
                "_id": order_id,
                "accountId": account_id,
                "symbol": "PETR4",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "100",
                "price": "38.00",
                "status": "PENDING",
                "createdAt": "2026-06-25T13:00:00.000000Z",
            }
        )

    on_partition = {"acc-caught-up": 0, "acc-marker": 1, "acc-behind": 2, "acc-unseen": 3}
    requests = [request(f"o-{account}", account) for account in on_partition]
    # Partition 1 trails by one record: the commit marker of the last transaction, not a backlog.
    backlog = {0: 0, 1: 1, 2: 2}
    lost, queued = split_queued(requests, on_partition.__getitem__, backlog)
    assert [r.account_id for r in lost] == ["acc-caught-up", "acc-marker", "acc-unseen"]
    assert [r.account_id for r in queued] == ["acc-behind"]
