"""The reconciler service: re-sends the requests of stuck orders, and checks every account's
balances and positions against the ledger. ``python -m brokerflow.reconciler``.

Passes on their own timers:

* orders, every ``RECONCILER_ORDERS_INTERVAL_S`` (30 s): orders of the ``orders`` read model
  PENDING for more than ``RECONCILER_STUCK_AFTER_S`` (60 s, by ``createdAt``) get their
  ``RequestOrder`` published again on ``account-commands-v1``; open orders whose cancel was
  requested that long ago (``cancelRequestedAt``) their ``RequestCancel``. Why this is safe:
  :mod:`.orders`. Not while the accounts agent's group trails the end of the request's partition:
  under overload every order looks stuck, and re-sending would lengthen the very queue it waits
  in (``reconciler_queued`` counts those left alone). Counted in
  ``reconciler_republished_total{command}`` and logged one by one.
* settlements, at start and after each midnight in Sao Paulo: a ``SettleDue`` to every account
  whose read model shows unsettled proceeds, so D+2 cash settles (and becomes withdrawable) on
  its date even when the account sends nothing (the agent settles what is due before any request
  anyway). Counted in ``reconciler_settlements_requested_total``.
* balances, every ``RECONCILER_BALANCES_INTERVAL_S`` (300 s): the ledger's end offsets are taken
  first; then the copies are read (MongoDB ``accounts`` and ``positions``, and the accounts agent's
  table ``accounts_by_id`` from its changelog ``{EXCHANGE_APP_ID}-accounts_by_id-changelog``,
  whose values are :meth:`AccountState.to_bytes`); then ``ledger-events-v1`` from offset 0 to those
  ends, ``read_committed``, folded (:class:`~.compare.LedgerFold`) keeping the account at each
  sequence a copy is at. Each copy is compared with the ledger at its own sequence (see
  :mod:`.compare` on in-flight events), so only accounts whose ledger was read up to the copy's
  point are judged. Every discrepancy is logged naming the account, the field, expected and found,
  and counted in ``reconciler_discrepancies{source,field}`` (and the
  ``reconciler_discrepancy_count`` total) until the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from pydantic import ValidationError
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from brokerflow.broker.calendar import local_date
from brokerflow.broker.state import AccountState
from brokerflow.errors import SchemaError, StackError
from brokerflow.exchange.io import LogReader
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import (
    RECONCILER_ACCOUNTS,
    RECONCILER_DISCREPANCIES,
    RECONCILER_DISCREPANCY_COUNT,
    RECONCILER_LAST_PASS,
    RECONCILER_QUEUED,
    RECONCILER_REPUBLISHED,
    RECONCILER_SETTLEMENTS_REQUESTED,
)
from brokerflow.projections.folds import ACCOUNTS, ORDERS, POSITIONS, Document
from brokerflow.reconciler.compare import (
    Discrepancy,
    Field,
    LedgerFold,
    Outcome,
    Source,
    check_agent,
    check_read_model,
)
from brokerflow.reconciler.orders import (
    OPEN_STATUSES,
    cancel_request_of,
    order_request_of,
    split_queued,
)
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import RequestCancel, RequestOrder, SettleDue
from brokerflow.schemas.base import format_utc
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

__all__ = ["BalancesPass", "OrdersPass", "Reconciler", "agent_changelog", "run_reconciler"]

log = logging.getLogger(__name__)

#: Keys of the agent's table that are its input bookkeeping, not an account
#: (``brokerflow.agents.exactly_once.NEXT_OFFSET_PREFIX``; not imported: that builds the app).
_BOOKKEEPING = b"#next-offset|"
_STATUS_INDEX = ("orders_by_status_created", [("status", ASCENDING), ("createdAt", ASCENDING)])


def agent_changelog(settings: Settings) -> str:
    """The accounts agent's table changelog: Faust names it ``{app id}-{table}-changelog``."""
    return f"{settings.exchange_app_id}-accounts_by_id-changelog"


@dataclass
class OrdersPass:
    orders: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    #: Documents that could not be turned into a request (logged).
    unreadable: int = 0
    #: Stuck-looking requests left alone because the accounts agent has not yet read their
    #: partition to the end (they are in its backlog, not lost).
    queued: int = 0


@dataclass
class BalancesPass:
    discrepancies: list[Discrepancy] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    accounts: int = 0
    ledger_records: int = 0
    #: Ledger records that were not a readable next entry of their account.
    ledger_skipped: int = 0
    #: False when the agent's changelog was not there to read (no worker ever ran).
    agent_checked: bool = True


class Reconciler:
    """One pass of each kind at a time; :func:`run_reconciler` schedules them."""

    def __init__(
        self, settings: Settings, db: AsyncDatabase[dict[str, Any]], writer: AIOKafkaProducer
    ) -> None:
        self.settings = settings
        self.db = db
        self.writer = writer
        topics = catalog(settings)
        self.commands_topic = topics.account_commands.name
        self.commands_partitions = topics.account_commands.partitions
        self.ledger_topic = topics.ledger_events.name
        self.changelog = agent_changelog(settings)

    async def ensure_indexes(self) -> None:
        """The index the stuck-order query uses (only if missing: FerretDB 1.24 can deadlock
        on a createIndexes of an index that exists)."""
        name, keys = _STATUS_INDEX
        if name not in await self.db[ORDERS].index_information():
            await self.db[ORDERS].create_index(keys, name=name)

    # --- orders ------------------------------------------------------------------------------

    async def orders_pass(self, now: datetime) -> OrdersPass:
        cutoff = format_utc(now - timedelta(seconds=self.settings.reconciler_stuck_after_s))
        done = OrdersPass()
        orders = self.db[ORDERS]
        requests: list[RequestOrder | RequestCancel] = []
        async for document in orders.find({"status": "PENDING", "createdAt": {"$lt": cutoff}}):
            try:
                requests.append(order_request_of(document))
            except (KeyError, ValueError, ValidationError) as exc:
                done.unreadable += 1
                log.error("reconciler: PENDING order %s unreadable: %s", document.get("_id"), exc)
        cancels = orders.find(
            {"status": {"$in": list(OPEN_STATUSES)}, "cancelRequestedAt": {"$lt": cutoff}}
        )
        async for document in cancels:
            try:
                requests.append(cancel_request_of(document))
            except (KeyError, ValueError, ValidationError) as exc:
                done.unreadable += 1
                log.error("reconciler: cancel of order %s unreadable: %s", document.get("_id"), exc)
        if not requests:
            return done
        requests, queued = split_queued(requests, self._partition_of, await self._backlog())
        if queued:
            done.queued = len(queued)
            RECONCILER_QUEUED.set(len(queued))
            log.warning(
                "reconciler: %d stuck-looking requests left alone: the accounts agent (group %s) "
                "has not yet read their partitions of %s to the end",
                len(queued),
                self.settings.exchange_app_id,
                self.commands_topic,
            )
        else:
            RECONCILER_QUEUED.set(0)
        if not requests:
            return done
        # Orders before cancels: an account's requests share a partition, so a cancel of an
        # order sent again is decided after it.
        requests.sort(key=lambda request: isinstance(request, RequestCancel))
        await publish(
            self.writer,
            self.commands_topic,
            [(request.account_id, request) for request in requests],
        )
        for request in requests:
            RECONCILER_REPUBLISHED.labels(command=request.type).inc()
            if isinstance(request, RequestOrder):
                done.orders.append(request.order_id)
                log.warning(
                    "reconciler: order %s of account %s PENDING since %s: RequestOrder sent again",
                    request.order_id,
                    request.account_id,
                    format_utc(request.event_time),
                )
            else:
                done.cancels.append(request.order_id)
                log.warning(
                    "reconciler: cancel of order %s of account %s requested at %s and the order "
                    "is still open: RequestCancel sent again",
                    request.order_id,
                    request.account_id,
                    format_utc(request.event_time),
                )
        return done

    def _partition_of(self, account_id: str) -> int:
        """The partition the API's producer picks for this key (the default partitioner)."""
        return (murmur2(account_id.encode()) & 0x7FFFFFFF) % self.commands_partitions

    async def _backlog(self) -> dict[int, int]:
        """Records of each ``account-commands`` partition the worker's group has not committed.
        A partition the group never committed counts as all backlog: no worker has read it."""
        partitions = [
            TopicPartition(self.commands_topic, p) for p in range(self.commands_partitions)
        ]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(
                self.settings.exchange_app_id, partitions=partitions
            )
        finally:
            await admin.close()
        async with consumer(self.settings) as reader:
            ends = await reader.end_offsets(partitions)
        backlog: dict[int, int] = {}
        for tp in partitions:
            mark = committed.get(tp)
            position = mark.offset if mark is not None and mark.offset >= 0 else 0
            backlog[tp.partition] = max(0, ends[tp] - position)
        return backlog

    # --- settlements -------------------------------------------------------------------------

    async def settlements_pass(self, now: datetime) -> list[str]:
        """``SettleDue`` to every account whose read model shows unsettled proceeds, so D+2 cash
        settles on its date even for an account that sends nothing; the accounts it went to.
        The request id names the account and the Sao Paulo date: one sweep a day per account."""
        day = local_date(now)
        accounts: list[str] = []
        async for document in self.db[ACCOUNTS].find({}, {"balances": 1}):
            balances = document.get("balances") or {}
            if any(_positive(entry.get("unsettled")) for entry in balances.values()):
                accounts.append(str(document["_id"]))
        if not accounts:
            return []
        requests = [
            SettleDue(
                request_id=f"settle-{day.isoformat()}-{account}"[:64],
                account_id=account,
                event_time=now,
            )
            for account in accounts
        ]
        await publish(self.writer, self.commands_topic, [(r.account_id, r) for r in requests])
        RECONCILER_SETTLEMENTS_REQUESTED.inc(len(requests))
        log.info(
            "reconciler: SettleDue for %s sent to %d accounts with unsettled proceeds",
            day.isoformat(),
            len(requests),
        )
        return accounts

    # --- balances ----------------------------------------------------------------------------

    async def balances_pass(self, now: datetime) -> BalancesPass:
        done = BalancesPass()
        async with LogReader.open(self.settings) as reader:
            partitions = range(catalog(self.settings).ledger_events.partitions)
            ends = await reader.stable_ends((self.ledger_topic, p) for p in partitions)
            accounts, positions = await self._read_models()
            states = await self._agent_states(reader)
        done.agent_checked = states is not None
        wanted: dict[str, set[int]] = defaultdict(set)
        for account_id, document in accounts.items():
            wanted[account_id].add(int(document.get("sequence", -1)))
        for account_id, by_symbol in positions.items():
            wanted[account_id].update(int(d.get("sequence", -1)) for d in by_symbol.values())
        for account_id, state in (states or {}).items():
            wanted[account_id].add(state.next_sequence - 1)
        fold = LedgerFold(wanted)
        done.ledger_records = await self._fold_ledger(fold, ends, done)
        done.ledger_skipped += fold.out_of_sequence
        settled_before = now - timedelta(seconds=self.settings.reconciler_grace_s)
        for account_id in fold.accounts():
            done.accounts += 1
            outcome, found = check_read_model(
                fold,
                account_id,
                accounts.get(account_id),
                positions.get(account_id, {}),
                settled_before=settled_before,
            )
            done.outcomes[(Source.READ_MODEL.value, outcome.value)] += 1
            done.discrepancies.extend(found)
            if states is not None:
                outcome, found = check_agent(
                    fold, account_id, states.get(account_id), settled_before=settled_before
                )
                done.outcomes[(Source.AGENT.value, outcome.value)] += 1
                done.discrepancies.extend(found)
        self._report(done)
        return done

    async def _read_models(self) -> tuple[dict[str, Document], dict[str, dict[str, Document]]]:
        accounts = {str(d["_id"]): d async for d in self.db[ACCOUNTS].find({})}
        positions: dict[str, dict[str, Document]] = defaultdict(dict)
        async for document in self.db[POSITIONS].find({}):
            account_id, symbol = document.get("accountId"), document.get("symbol")
            if account_id and symbol:
                positions[str(account_id)][str(symbol)] = document
        return accounts, positions

    async def _agent_states(self, reader: LogReader) -> dict[str, AccountState] | None:
        async with consumer(self.settings) as probe:
            known = await probe.topics()
        if self.changelog not in known:
            log.warning(
                "reconciler: no changelog %s (has the exchange worker with EXCHANGE_APP_ID=%s "
                "run?): the agent's state is not checked",
                self.changelog,
                self.settings.exchange_app_id,
            )
            return None
        snapshots = await reader.latest_values(
            (self.changelog, p) for p in range(self.settings.topic_partitions)
        )
        states: dict[str, AccountState] = {}
        for snapshot in snapshots.values():
            for key, value in snapshot.values.items():
                if key.startswith(_BOOKKEEPING):
                    continue
                try:
                    states[key.decode()] = AccountState.from_bytes(value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("reconciler: agent state of %r unreadable: %s", key, exc)
        return states

    async def _fold_ledger(
        self, fold: LedgerFold, ends: Mapping[tuple[str, int], int], done: BalancesPass
    ) -> int:
        """Fold the ledger from offset 0 to ``ends`` (its last stable offsets at the start)."""
        wanted = [TopicPartition(topic, p) for (topic, p), end in ends.items() if end > 0]
        if not wanted:
            return 0
        stop = {TopicPartition(topic, p): end for (topic, p), end in ends.items()}
        count = 0
        async with consumer(self.settings, enable_auto_commit=False) as reader:
            reader.assign(wanted)
            await reader.seek_to_beginning(*wanted)
            pending = set(wanted)
            while pending:
                for tp in list(pending):
                    if await reader.position(tp) >= stop[tp]:
                        pending.discard(tp)
                if not pending:
                    break
                batch = await reader.getmany(*pending, timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= stop[tp]:
                            continue
                        count += 1
                        try:
                            fold.apply(decode(record.value or b""))
                        except SchemaError as exc:
                            done.ledger_skipped += 1
                            log.error(
                                "reconciler: %s[%d]@%d unreadable: %s",
                                tp.topic,
                                tp.partition,
                                record.offset,
                                exc,
                            )
        return count

    def _report(self, done: BalancesPass) -> None:
        RECONCILER_DISCREPANCIES.clear()
        for source in Source:
            for kind in Field:
                RECONCILER_DISCREPANCIES.labels(source=source.value, field=kind.value).set(0)
        counts = Counter((d.source.value, d.field.value) for d in done.discrepancies)
        for (source, kind), count in counts.items():
            RECONCILER_DISCREPANCIES.labels(source=source, field=kind).set(count)
        RECONCILER_DISCREPANCY_COUNT.set(len(done.discrepancies))
        RECONCILER_ACCOUNTS.clear()
        for source in Source:
            for outcome in Outcome:
                count = done.outcomes.get((source.value, outcome.value), 0)
                RECONCILER_ACCOUNTS.labels(source=source.value, outcome=outcome.value).set(count)
        RECONCILER_LAST_PASS.set(time.time())
        for discrepancy in done.discrepancies:
            log.error(
                "reconciler: discrepancy %s: %s", discrepancy.field.value, discrepancy.describe()
            )
        log.info(
            "reconciler: %d accounts checked against %d ledger records: %d discrepancies (%s)%s",
            done.accounts,
            done.ledger_records,
            len(done.discrepancies),
            ", ".join(f"{s} {o} {n}" for (s, o), n in sorted(done.outcomes.items())) or "none",
            "" if done.agent_checked else "; agent state not checked",
        )


async def run_reconciler(settings: Settings, stop: asyncio.Event) -> None:
    """Run both passes on their timers until ``stop`` is set. A pass that fails (Kafka or
    MongoDB down) is logged and tried again at its next turn."""
    topics = catalog(settings)
    try:
        await ensure_topics(settings, [topics.account_commands, topics.ledger_events])
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    try:
        async with producer(settings, enable_idempotence=True, acks="all", linger_ms=0) as writer:
            reconciler = Reconciler(settings, mongo[settings.mongo_database], writer)
            try:
                await reconciler.ensure_indexes()
            except PyMongoError as exc:
                raise StackError(
                    f"MongoDB at {settings.mongo_url} did not answer ({str(exc)[:120]}); start "
                    "the local stack with `brokerflow stack up`, or set MONGO_URL"
                ) from exc
            log.info(
                "reconciler: stuck orders every %g s (after %g s), balances every %g s",
                settings.reconciler_orders_interval_s,
                settings.reconciler_stuck_after_s,
                settings.reconciler_balances_interval_s,
            )
            await _schedule(reconciler, settings, stop)
    finally:
        await mongo.close()


async def _schedule(reconciler: Reconciler, settings: Settings, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    swept: date | None = None
    due = {"orders": loop.time(), "balances": loop.time()}
    every = {
        "orders": settings.reconciler_orders_interval_s,
        "balances": settings.reconciler_balances_interval_s,
    }
    passes = {"orders": reconciler.orders_pass, "balances": reconciler.balances_pass}
    while not stop.is_set():
        for name, run in passes.items():
            if loop.time() < due[name]:
                continue
            try:
                await run(datetime.now(UTC))
            except (PyMongoError, KafkaError, OSError, TimeoutError, StackError) as exc:
                log.warning(
                    "reconciler: %s pass failed (%s); next try in %g s", name, exc, every[name]
                )
            due[name] = loop.time() + every[name]
        # Settlement dates are Sao Paulo dates: one sweep at start and one after each midnight.
        now = datetime.now(UTC)
        if swept != local_date(now):
            try:
                await reconciler.settlements_pass(now)
                swept = local_date(now)
            except (PyMongoError, KafkaError, OSError, TimeoutError, StackError) as exc:
                log.warning("reconciler: settlements pass failed (%s); trying again", exc)
        wait = max(0.0, min(due.values()) - loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)


def _positive(amount: object) -> bool:
    try:
        return Decimal(str(amount)) > 0
    except ArithmeticError:
        return False
