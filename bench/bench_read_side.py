"""The broker's read side: a fill to the user's WebSocket and to their portfolio, and the
projector against a plain consumer.

Run ``python bench/bench_read_side.py`` (``--rates 50,200 --seconds 60``; the local stack must be
up). Like ``bench_broker_api.py`` it starts ``brokerflow run`` in a namespace of its own and
sends PETR4 limit orders open-loop at each rate from ``--users`` funded users (background load:
about half of them trade), with the simulated participants off. Meanwhile probe pairs trade
VALE3, which nothing else trades: every ``--probe-interval`` a probe seller rests 100 shares
and its buyer takes them. For each probe
fill it measures, from the trade's record timestamp on ``trade-executions-v1`` (set by the
exchange's producer when it wrote the trade, in the transaction that made it):

* fill -> WebSocket: until the buyer's ``/ws/v1/orders`` socket, open all along, receives the
  ``ORDER_UPDATE`` with that ``executionId``;
* fill -> portfolio: until ``GET /api/v1/portfolio`` (the Redis cache) shows the buyer's new
  VALE3 quantity, polled every 10 ms by the probe alone.

Then the projector's throughput: the records the run's projector took, over the time its batches
took (from its own metrics: ``projector_events_total``, ``projector_batch_duration_seconds``;
MongoDB and Redis writes included, idle waits not), against a plain aiokafka consumer reading
the same topics from offset 0 (``read_committed``, no decoding) in the same run. Prints each figure,
the CPU by process during each rate, the machine and the command; cleans its namespace up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import websockets
from aiokafka import TopicPartition

from brokerflow.kafka_io import consumer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line
from bench_broker_api import (
    BROKERFLOW,
    PASSWORD,
    cpu_breakdown,
    cpu_seconds_by_role,
    drop_namespace,
    free_port,
    load,
    percentile,
    set_up_users,
    system_env,
    wait_until_up,
)

PROBE_SYMBOL = "VALE3"
PROBE_PRICE = "61.00"
#: How long a probe polls its portfolio for a fill before counting it as not shown.
PORTFOLIO_WAIT_S = 10.0


class Probe:
    """One buyer and one seller of VALE3; the buyer's socket and fills, timed."""

    def __init__(self, base: str, name: str) -> None:
        self.base = base
        self.name = name
        self.buyer: dict[str, str] = {}
        self.seller: dict[str, str] = {}
        self.token = ""
        self.socket_seen: dict[str, float] = {}  # executionId -> receive time (epoch s)
        self.portfolio_seen: list[tuple[int, float]] = []  # (quantity, time it showed)
        self.portfolio_missed = 0  # fills the portfolio did not show within PORTFOLIO_WAIT_S
        self.bought = 0
        self.account_id = ""

    async def set_up(self, client: httpx.AsyncClient) -> None:
        for role, body in (
            ("buyer", {"currency": "BRL", "amount": "100000000.00"}),
            ("seller", None),
        ):
            name = f"{self.name}{role}"
            created = await client.post(
                "/api/v1/users", json={"username": name, "password": PASSWORD}
            )
            created.raise_for_status()
            token = await client.post(
                "/api/v1/auth/token", json={"username": name, "password": PASSWORD}
            )
            token.raise_for_status()
            auth = {"Authorization": f"Bearer {token.json()['accessToken']}"}
            if body is not None:
                await client.post("/api/v1/account/deposits", json=body, headers=auth)
                self.buyer, self.token = auth, token.json()["accessToken"]
                self.account_id = created.json()["accountId"]
            else:
                await client.post(
                    "/api/v1/account/custody-transfers",
                    json={"symbol": PROBE_SYMBOL, "quantity": "1000000", "averagePrice": "60"},
                    headers=auth,
                )
                self.seller = auth

    async def listen(self, stop: asyncio.Event) -> None:
        url = self.base.replace("http://", "ws://") + f"/ws/v1/orders?token={self.token}"
        async with websockets.connect(url, proxy=None) as socket:
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(socket.recv(), 0.5)
                except TimeoutError:
                    continue
                message = json.loads(text)
                if message.get("type") == "ORDER_UPDATE" and message.get("executionId"):
                    self.socket_seen.setdefault(message["executionId"], time.time())

    async def trade_once(self, client: httpx.AsyncClient) -> None:
        order = {"symbol": PROBE_SYMBOL, "type": "LIMIT", "quantity": "100", "price": PROBE_PRICE}
        await client.post("/api/v1/orders", json={**order, "side": "SELL"}, headers=self.seller)
        await client.post("/api/v1/orders", json={**order, "side": "BUY"}, headers=self.buyer)
        self.bought += 100
        deadline = time.monotonic() + PORTFOLIO_WAIT_S
        while time.monotonic() < deadline:
            answer = await client.get("/api/v1/portfolio", headers=self.buyer)
            if answer.status_code == 200:
                held = {p["symbol"]: p["quantity"] for p in answer.json()["positions"]}
                if int(float(held.get(PROBE_SYMBOL, "0"))) >= self.bought:
                    self.portfolio_seen.append((self.bought, time.time()))
                    return
            await asyncio.sleep(0.01)
        self.portfolio_missed += 1


async def trade_times(settings: Settings) -> dict[str, tuple[str, float]]:
    """trade id -> (buying account, its record's timestamp in epoch s), for the probe symbol."""
    spec = catalog(settings).trade_executions
    topic = spec.name
    found: dict[str, tuple[str, float]] = {}
    async with consumer(settings) as reader:
        partitions = [TopicPartition(topic, p) for p in range(spec.partitions)]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        deadline = time.monotonic() + 30  # an open transaction would hold the end back
        while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                break
            for batch in (await reader.getmany(timeout_ms=500)).values():
                for record in batch:
                    if record.key == PROBE_SYMBOL.encode():
                        trade = json.loads(record.value)
                        found[trade["tradeId"]] = (
                            trade.get("buyAccountId") or "",
                            record.timestamp / 1000,
                        )
    return found


async def plain_read(settings: Settings, topics: list[str]) -> tuple[int, float]:
    """Records and seconds for a plain consumer to read ``topics`` from offset 0 to the end."""
    async with consumer(settings) as reader:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in range(settings.topic_partitions)
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        started, count, last = time.perf_counter(), 0, time.perf_counter()
        while open_ := [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
            fetched = await reader.getmany(*open_, timeout_ms=500, max_records=5000)
            count += sum(len(batch) for batch in fetched.values())
            if fetched:
                last = time.perf_counter()
            elif time.perf_counter() - last > 10:  # stalled (an open transaction): stop there
                break
        return count, last - started


async def projector_busy(run_log: Path) -> tuple[float, float] | None:
    """(records, seconds in batches) from the run's projector's metrics endpoint."""
    text = await asyncio.to_thread(run_log.read_text, errors="replace")
    url = next(
        (
            line.split()[2]
            for line in text.splitlines()
            if line.strip().startswith("projector ") and "/metrics" in line
        ),
        None,
    )
    if url is None:
        return None
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        text = (await client.get(url)).text
    records = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("projector_events_total{")
    )
    seconds = next(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("projector_batch_duration_seconds_sum")
    )
    return records, seconds


def summary(name: str, values_ms: list[float]) -> str:
    if not values_ms:
        return f"{name}: no sample"
    return (
        f"{name}: p50 {percentile(values_ms, 50):.1f} ms, p90 {percentile(values_ms, 90):.1f} ms, "
        f"p99 {percentile(values_ms, 99):.1f} ms, max {max(values_ms):.1f} ms "
        f"({len(values_ms)} fills)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200", help="background orders/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--probe-interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rates = [float(rate) for rate in args.rates.split(",")]
    base_settings = Settings()
    unique = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="bench-read-side-"))
    port = free_port()
    # The probes need VALE3 to themselves: the simulated makers would quote it too.
    env = {**system_env(base_settings, unique, workdir, port), "PARTICIPANTS_ENABLED": "false"}
    settings = base_settings.model_copy(
        update={
            "topic_prefix": env["TOPIC_PREFIX"],
            "mongo_database": env["MONGO_DATABASE"],
            "api_redis_prefix": env["API_REDIS_PREFIX"],
            "exchange_app_id": env["EXCHANGE_APP_ID"],
        }
    )
    log = open(workdir / "run.log", "wb")  # noqa: SIM115
    system = subprocess.Popen(
        [BROKERFLOW, "run", "--for", "60m"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def report(line: str) -> None:
        print(line, flush=True)

    try:

        async def bench() -> None:
            await wait_until_up(base, 120)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                users = await set_up_users(client, args.users)
                probes = [Probe(base, f"probe{n}") for n in range(args.probes)]
                for probe in probes:
                    await probe.set_up(client)
                await asyncio.sleep(5)
                for rate in rates:
                    for p in probes:  # this rate's samples only (``bought`` keeps counting)
                        p.socket_seen.clear()
                        p.portfolio_seen.clear()
                        p.portfolio_missed = 0
                    stop = asyncio.Event()
                    listeners = [asyncio.create_task(p.listen(stop)) for p in probes]
                    await asyncio.sleep(1)

                    async def probing(probe: Probe, until: float) -> None:
                        async with httpx.AsyncClient(base_url=base, timeout=30) as own:
                            while time.monotonic() < until:
                                await probe.trade_once(own)
                                await asyncio.sleep(args.probe_interval)

                    before, started = cpu_seconds_by_role(), time.monotonic()
                    until = started + args.seconds
                    background = asyncio.create_task(load(base, users, rate, args.seconds))
                    await asyncio.gather(*(probing(p, until) for p in probes))
                    _, outcomes = await background
                    cpu = cpu_breakdown(before, cpu_seconds_by_role(), time.monotonic() - started)
                    await asyncio.sleep(3)  # the last updates
                    stop.set()
                    await asyncio.gather(*listeners, return_exceptions=True)
                    fills = await trade_times(settings)
                    socket_ms = [
                        1000 * (seen - fills[trade][1])
                        for p in probes
                        for trade, seen in p.socket_seen.items()
                        if trade in fills
                    ]
                    # A buyer's n-th fill is the one that brought its VALE3 to n x 100.
                    portfolio_ms = []
                    for p in probes:
                        own = sorted(at for buyer, at in fills.values() if buyer == p.account_id)
                        for quantity, seen in p.portfolio_seen:
                            index = quantity // 100 - 1
                            if index < len(own):
                                portfolio_ms.append(1000 * (seen - own[index]))
                    answered = Counter(outcomes)
                    report(
                        f"{rate:.0f} orders/s background for {args.seconds:.0f} s "
                        f"(answers {dict(answered)}), {len(probes)} probe pairs:"
                    )
                    report("  " + summary("fill -> WebSocket", socket_ms))
                    missed = sum(p.portfolio_missed for p in probes)
                    report(
                        "  "
                        + summary("fill -> GET /portfolio", portfolio_ms)
                        + f"; {missed} more not shown within {PORTFOLIO_WAIT_S:.0f} s"
                    )
                    report(f"  {cpu}")
                # The live projector's own account of its busy time, before the system stops.
                busy = await projector_busy(workdir / "run.log")
                topics = catalog(settings)
                names = [
                    topics.order_events.name,
                    topics.ledger_events.name,
                    topics.account_events.name,
                ]
                count, plain_s = await plain_read(settings, names)
                if busy is not None:
                    records, seconds = busy
                    rate = records / seconds if seconds else 0.0
                    plain_rate = count / plain_s if plain_s else 0.0
                    ratio = rate / plain_rate if plain_rate else 0.0
                    report(
                        f"projector: {records:.0f} records in {seconds:.2f} s of batches "
                        f"(MongoDB and Redis writes included) = {rate:,.0f}/s; a plain consumer "
                        f"reading the same topics from offset 0: {count} records in "
                        f"{plain_s:.2f} s = {plain_rate:,.0f}/s; ratio {ratio:.4f}"
                    )

        asyncio.run(bench())
    finally:
        system.send_signal(signal.SIGTERM)
        try:
            system.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(system.pid, signal.SIGKILL)

    asyncio.run(delete_topics(settings, lambda name: unique in name))
    asyncio.run(drop_namespace(base_settings, env["MONGO_DATABASE"], f"bench{unique}:"))
    print(machine_line())
    print(
        f"command: python bench/bench_read_side.py --rates {args.rates} --seconds "
        f"{args.seconds:.0f} --users {args.users} --probes {args.probes} --probe-interval "
        f"{args.probe_interval}"
    )
    print(f"system log: {workdir / 'run.log'} (and {workdir / 'stack' / 'logs'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
