"""``manage_accounts``: the broker's accounts. Requests and execution reports in; holds, ledger
entries, decisions and exchange commands out, exactly once.

Consumes two co-partitioned topics keyed by account:

* ``account-commands-v1``: the API's requests (open, deposit, withdraw, custody transfer, place,
  cancel, amend). Each is decided in log order by the pure core (:func:`brokerflow.broker.decide`):
  a hold is placed or the request refused, never half of it. The decision goes to
  ``account-events-v1`` (``RequestAccepted`` / ``RequestRefused``), the money to
  ``ledger-events-v1``, and an accepted order to ``order-commands-v1`` keyed by symbol.
* ``execution-reports-v1``: the exchange's order events of this broker's orders, re-keyed by
  account by the matching agent inside its own transaction. Fills settle against the hold
  (:func:`brokerflow.broker.apply_report`); what a cancel, expiry or rejection leaves of a hold is
  released. A report at or below the last exchange sequence the account applied for its symbol is
  a duplicate and changes nothing.

Both inputs are processed with the exchange's exactly-once discipline
(:class:`~brokerflow.agents.exactly_once.ExactlyOnceAgent`): outputs, the account's table record
and the input's next offset commit in one transaction; partitions are restored from the changelog
on every assignment; commands Faust did not deliver are read from the topic. A ``kill -9``
therefore neither loses nor doubles a hold, a fill or a ledger entry.

Every account lives in memory (one small record each) and in :data:`~brokerflow.tables.accounts.
accounts_by_id`, written once per batch per account. Malformed input goes to ``dead-letters-v1``
with the reason and is counted; it never stops the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from faust.types import StreamT

from brokerflow.agents.exactly_once import (
    ExactlyOnceAgent,
    InputRecord,
    TableWrites,
    input_topics,
    next_offset_key,
    next_offset_record,
    send_in_transaction,
    split_next_offsets,
)
from brokerflow.app import app, settings
from brokerflow.broker import AccountState, BrokerRules, apply_report, decide
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.exchange.io import PartitionSnapshot
from brokerflow.metrics import ACCOUNT_DECISIONS, LEDGER_ENTRIES
from brokerflow.schemas import decode
from brokerflow.tables.accounts import accounts_by_id
from brokerflow.topics import catalog

__all__ = ["account_inputs", "accounts", "manage_accounts"]

log = logging.getLogger(__name__)

topics = catalog(settings)
_REQUESTS_TOPIC = topics.account_commands.name
_REPORTS_TOPIC = topics.execution_reports.name
_DECISIONS_TOPIC = topics.account_events.name
_LEDGER_TOPIC = topics.ledger_events.name
_EXCHANGE_TOPIC = topics.order_commands.name
_INPUT_TOPICS = (_REQUESTS_TOPIC, _REPORTS_TOPIC)
_REQUESTS = frozenset(topics.account_commands.value_types)
_REPORTS = frozenset(topics.execution_reports.value_types)

#: Co-partitioned, keyed by account. ``acks=False``: offsets are committed by the agent's
#: bookkeeping, never from Faust's acks (see :mod:`brokerflow.agents.exactly_once`).
account_inputs = input_topics(*_INPUT_TOPICS, partitions=topics.account_commands.partitions)


class _Accounts(ExactlyOnceAgent):
    """The accounts of the partitions this worker owns."""

    def __init__(self) -> None:
        super().__init__("accounts", "accounts", _INPUT_TOPICS, (accounts_by_id,))
        self.rules = BrokerRules.from_settings(settings)
        self.states: dict[str, AccountState] = {}
        self.partition_of: dict[str, int] = {}
        self.requests = 0
        self.reports = 0
        self.reports_ignored = 0

    def drop_state(self) -> None:
        self.states.clear()
        self.partition_of.clear()

    def load_partition(
        self, partition: int, snapshots: Mapping[Any, PartitionSnapshot], now: float
    ) -> dict[str, int | None]:
        for account in [a for a, owner in self.partition_of.items() if owner == partition]:
            del self.partition_of[account]
            self.states.pop(account, None)
        next_offsets, records = split_next_offsets(snapshots[accounts_by_id].values.items())
        for key, value in records:
            account = key.decode()
            self.states[account] = AccountState.from_bytes(value)
            self.partition_of[account] = partition
        return {topic: next_offsets.get(topic) for topic in _INPUT_TOPICS}

    def restore_summary(self) -> str:
        return f"{len(self.states)} accounts"

    async def process(self, record: InputRecord, writes: TableWrites, now: float) -> None:
        writes.set(
            record,
            accounts_by_id,
            next_offset_key(record.topic),
            next_offset_record(record.offset + 1),
        )
        expected = _REQUESTS if record.topic == _REQUESTS_TOPIC else _REPORTS
        try:
            message = decode(record.value)
            if message.type not in expected:
                raise UnknownMessageError(
                    message.type, {"type": f"{message.type} does not belong on {record.topic}"}
                )
        except SchemaError as exc:
            await self.dead_letter(record, exc)
            return
        account: str | None = message.__dict__.get("account_id")
        if account is None or (record.key is not None and record.key != account.encode()):
            detail = f"key {record.key!r} does not name the message's account {account!r}"
            await self.dead_letter(record, SchemaError(message.type, {"accountId": detail}))
            return
        state = self.states.get(account)
        try:
            if record.topic == _REQUESTS_TOPIC:
                self.requests += 1
                new_state, outcome = decide(self.rules, state, message)
            else:
                self.reports += 1
                new_state, outcome = apply_report(self.rules, state, message)
                if not (outcome.ledger or outcome.decisions or outcome.exchange):
                    self.reports_ignored += 1
        except Exception as exc:  # a bug in the core must not stop every account's stream
            log.exception(
                "%s[%d]@%d could not be applied", record.topic, record.partition, record.offset
            )
            problem = f"{type(exc).__name__}: {exc}"
            error = SchemaError(message.type, {"<processing>": problem})
            await self.dead_letter(record, error, reason="PROCESSING_ERROR")
            return
        if new_state is not None and new_state is not state:
            self.states[account] = new_state
            self.partition_of[account] = record.partition
            writes.set(record, accounts_by_id, account.encode(), new_state.to_bytes())
        key = account.encode()
        for entry in outcome.ledger:
            LEDGER_ENTRIES.labels(type=entry.type).inc()
            send_in_transaction(record, _LEDGER_TOPIC, key, entry.to_json_bytes())
        for decision in outcome.decisions:
            code = decision.__dict__.get("code") or decision.__dict__.get("reason") or "ACCEPTED"
            ACCOUNT_DECISIONS.labels(command=decision.__dict__["command"], outcome=code).inc()
            send_in_transaction(record, _DECISIONS_TOPIC, key, decision.to_json_bytes())
        for command in outcome.exchange:
            symbol: str = command.__dict__["symbol"]
            send_in_transaction(record, _EXCHANGE_TOPIC, symbol.encode(), command.to_json_bytes())


accounts = _Accounts()


@app.timer(interval=settings.exchange_catch_up_interval_s)
async def catch_up_account_inputs() -> None:
    """Process what Faust dropped and nothing later will bring."""
    await accounts.catch_up()


@app.agent(account_inputs, concurrency=1)
async def manage_accounts(stream: StreamT) -> None:
    await accounts.consume(stream)
