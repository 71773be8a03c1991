"""Order placement latency through the whole system: POST /api/v1/orders to its answer.

Run ``python bench/bench_broker_api.py`` (``--rates 200,500 --seconds 60``; the local stack must be
up). It starts ``brokerflow run`` in a namespace of its own (topics, app id, database, Redis keys,
stack folder for state and logs; the same Kafka, Redis and MongoDB): the exchange and accounts
worker, the ingest flow looping the sample tape, the stats flow, the API and the projector. Then it
signs up ``--users`` users, funds each with cash and PETR4 shares, and for each rate sends limit
orders open-loop (at fixed instants, whatever the answers: no coordinated omission), half buys and
half sells around one price so about half of them trade and settle. Each order's latency runs from
the instant it was due to its answer (202 ACCEPTED once the accounts agent's decision is
committed, or 202 PENDING after API_DECISION_WAIT_MS). Prints p50/p90/p99/max per rate, how many
answers were ACCEPTED, PENDING or errors (with their code), the CPU each process used during each
rate (from /proc, by role: API, worker, projector, MongoDB, Kafka, ...), the machine and the
command. Load goes to loopback only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from brokerflow.settings import Settings
from brokerflow.topics import delete_topics

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line

BROKERFLOW = str(Path(sys.executable).with_name("brokerflow"))
PASSWORD = "bench-password-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_up(base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/api/v1/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the API at {base} did not answer within {timeout_s:.0f} s")


async def set_up_users(client: httpx.AsyncClient, count: int) -> list[dict[str, str]]:
    """Users with cash and shares; the first requests also wait out the worker's start-up."""
    users = []
    for n in range(count):
        name = f"bench{n:03d}"
        created = await client.post("/api/v1/users", json={"username": name, "password": PASSWORD})
        created.raise_for_status()
        token = await client.post(
            "/api/v1/auth/token", json={"username": name, "password": PASSWORD}
        )
        token.raise_for_status()
        auth = {"Authorization": f"Bearer {token.json()['accessToken']}"}
        for path, body in (
            ("/api/v1/account/deposits", {"currency": "BRL", "amount": "100000000.00"}),
            (
                "/api/v1/account/custody-transfers",
                {"symbol": "PETR4", "quantity": "10000000", "averagePrice": "37.00"},
            ),
        ):
            answer = await client.post(path, json=body, headers=auth)
            if answer.status_code not in (200, 201, 202):  # 202: decided later, still applied
                raise RuntimeError(f"{path} for {name}: {answer.status_code} {answer.text}")
        users.append(auth)
    return users


async def load(
    base: str, users: list[dict[str, str]], rate: float, seconds: float
) -> tuple[list[float], Counter[str]]:
    """Open-loop: order n is due at start + n / rate; latency from due time to answer.

    aiohttp, not httpx: with some hundred requests waiting for a connection, httpx's pool
    spent a whole core of the load generator and sent a tenth of the rate."""
    rng = random.Random(int(rate))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=500)
    async with aiohttp.ClientSession(
        base, connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        start = time.monotonic() + 0.5

        async def one(n: int, due: float) -> None:
            body = {
                "symbol": "PETR4",
                "side": "BUY" if n % 2 else "SELL",
                "type": "LIMIT",
                "quantity": str(rng.choice([100, 200, 300])),
                "price": f"{38.45 + rng.randint(0, 10) / 100:.2f}",
            }
            try:
                async with session.post(
                    "/api/v1/orders", json=body, headers=users[n % len(users)]
                ) as answer:
                    status = answer.status
                    payload = await answer.json()
                latencies.append(time.monotonic() - due)
                accepted = status == 202
                code = payload.get("code", "?") if isinstance(payload, dict) else "?"
                outcomes[payload.get("status", "?") if accepted else f"{status} {code}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                latencies.append(time.monotonic() - due)
                outcomes[type(exc).__name__] += 1

        tasks = []
        for n in range(total):  # each request is started at its due time, not before
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
    return latencies, outcomes


#: How a process is named in the CPU breakdown: the first pattern its command line contains.
_ROLES = (
    ("ferretdb", "mongodb (ferretdb)"),
    ("kafka.Kafka", "kafka"),
    ("redis-server", "redis"),
    ("uvicorn", "api"),
    ("brokerflow.app", "worker (faust)"),
    ("brokerflow.projections", "projector"),
    ("brokerflow.flows.ingest", "ingest"),
    ("brokerflow.flows.stats", "stats"),
    ("brokerflow.alerts", "alerts"),
    ("brokerflow.reconciler", "reconciler"),
    ("brokerflow.notifications", "notifications"),
    ("bench_broker_api", "load generator"),
)
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_role() -> Counter[str]:
    """CPU seconds (user + system) each kind of process has used so far, from /proc; what
    matches no role (other people's work on a shared machine) is 'other'."""
    used: Counter[str] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = next((name for pattern, name in _ROLES if pattern in command), "other")
        used[role] += (int(fields[11]) + int(fields[12])) / _TICKS
    return used


def cpu_breakdown(before: Counter[str], after: Counter[str], seconds: float) -> str:
    """Share of the machine's cores each role used between two readings, busiest first."""
    cores = os.cpu_count() or 1
    spent = {role: after[role] - before.get(role, 0.0) for role in after}
    ranked = sorted(((t, r) for r, t in spent.items() if t > 0.05 * seconds), reverse=True)
    parts = [f"{role} {100 * used / seconds:.0f}%" for used, role in ranked]
    return f"CPU (% of one core; {cores} cores = {100 * cores}%): " + ", ".join(parts)


async def drop_namespace(settings: Settings, database: str, redis_prefix: str) -> None:
    """The run's MongoDB database and Redis keys go with its topics."""
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongo_url)
    try:
        await mongo.drop_database(database)
    finally:
        await mongo.close()
    redis = Redis.from_url(settings.redis_url)
    try:
        async for key in redis.scan_iter(match=f"{redis_prefix}*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


def system_env(settings: Settings, unique: str, workdir: Path, port: int) -> dict[str, str]:
    """``brokerflow run``'s environment for a namespace of its own on the shared stack."""
    return {
        **os.environ,
        "STACK_DIR": str(workdir / "stack"),
        "TOPIC_PREFIX": f"bench{unique}-",
        "EXCHANGE_APP_ID": f"bench-broker-{unique}",
        "MONGO_DATABASE": f"bench_{unique}",
        "STATS_REDIS_PREFIX": f"bench{unique}:",
        "API_REDIS_PREFIX": f"bench{unique}:api:",
        "PROJECTIONS_GROUP_ID": f"bench-projections-{unique}",
        "NOTIFY_GROUP_ID": f"bench-notify-{unique}",
        "API_PORT": str(port),
        "API_RATE_LIMIT": "100000/second",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
        "MONGO_URL": settings.mongo_url,
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,500", help="orders/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--commit-interval",
        type=float,
        default=None,
        help="EXCHANGE_COMMIT_INTERVAL_S of the worker (default: the setting's)",
    )
    args = parser.parse_args(argv)
    # A SIGTERM must still stop the system it started (the `finally` below), not orphan it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rates = [float(rate) for rate in args.rates.split(",")]
    base_settings = Settings()
    unique = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    port = free_port()
    env = system_env(base_settings, unique, workdir, port)
    if args.commit_interval is not None:
        env["EXCHANGE_COMMIT_INTERVAL_S"] = str(args.commit_interval)
    log = open(workdir / "run.log", "wb")  # noqa: SIM115
    # A safety net only: the benchmark stops the system itself when it is done.
    system = subprocess.Popen(
        [BROKERFLOW, "run", "--for", "60m"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    results: list[tuple[float, list[float], Counter[str], str]] = []
    try:

        async def bench() -> None:
            await wait_until_up(base, 120)
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
                users = await set_up_users(client, args.users)
                await asyncio.sleep(5)  # the last fundings decided and projected
                for rate in rates:
                    before, started = cpu_seconds_by_role(), time.monotonic()
                    latencies, outcomes = await load(base, users, rate, args.seconds)
                    cpu = cpu_breakdown(before, cpu_seconds_by_role(), time.monotonic() - started)
                    results.append((rate, latencies, outcomes, cpu))
                    await asyncio.sleep(5)  # let the backlog drain before the next rate

        asyncio.run(bench())
    finally:
        system.send_signal(signal.SIGTERM)
        try:
            system.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(system.pid, signal.SIGKILL)
    for rate, latencies, outcomes, cpu in results:
        ms = [1000 * value for value in latencies]
        print(
            f"{rate:.0f} orders/s for {args.seconds:.0f} s ({len(ms)} orders): placement latency "
            f"p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, mean "
            f"{statistics.fmean(ms):.1f} ms; answers {dict(outcomes)}"
        )
        print(f"  {cpu}")
    settings = base_settings.model_copy(update={"topic_prefix": env["TOPIC_PREFIX"]})
    asyncio.run(delete_topics(settings, lambda name: unique in name))
    asyncio.run(drop_namespace(base_settings, env["MONGO_DATABASE"], f"bench{unique}:"))
    print(machine_line())
    extra = "" if args.commit_interval is None else f" --commit-interval {args.commit_interval}"
    print(
        f"command: python bench/bench_broker_api.py --rates {args.rates} --seconds "
        f"{args.seconds:.0f} --users {args.users}{extra}"
    )
    print(f"system log: {workdir / 'run.log'} (and {workdir / 'stack' / 'logs'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
