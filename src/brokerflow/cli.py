"""The ``brokerflow`` command.

brokerflow stack up|down|status|logs [SERVICE]   the local Kafka/Redis/MongoDB stack
brokerflow topics [--create]                     the topic catalog
brokerflow demo                                  the main job: what exists, end to end
brokerflow run [--for 60s] [--only|--without A,B] the whole system, supervised (--status)
brokerflow ps                                    what `brokerflow run` runs
brokerflow match [TAPE]                          replay an order tape through the matcher
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from brokerflow.errors import BrokerflowError
from brokerflow.settings import Settings

__all__ = ["main"]


def _stack_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.stack import ServiceState, Stack

    stack = Stack(settings)

    def show(state: ServiceState) -> None:
        pid = f" pid {state.pid}" if state.pid else ""
        took = f" ({state.seconds:.1f} s)" if state.seconds >= 0.05 else ""
        detail = f"  {state.detail}" if state.detail else ""
        print(f"  {state.name:<6} {state.state:<9} {state.endpoint}{pid}{took}{detail}")

    if args.action == "up":
        started = time.perf_counter()
        print(f"stack up (folder {stack.dir})")
        stack.up(report=show)
        if stack.kcat() is None:
            print("  kcat   missing    install it to tail topics: apt-get install -y kcat")
        print(f"stack ready in {time.perf_counter() - started:.1f} s")
        return 0
    if args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing (no service of ours ran)"))
        return 0
    if args.action == "status":
        states = stack.status()
        for state in states:
            show(state)
        return 0 if all(s.state in ("running", "external") for s in states) else 1
    if args.action == "logs":
        print(stack.logs(args.service, lines=args.lines))
        return 0
    raise AssertionError(args.action)


def _topics_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.topics import catalog, ensure_topics

    if args.partition_of:
        from aiokafka.partitioner import DefaultPartitioner

        spec = catalog(settings).by_name(args.topic)
        every = list(range(spec.partitions))
        print(DefaultPartitioner()(args.partition_of.encode(), every, every))
        return 0

    if args.create:
        created = asyncio.run(ensure_topics(settings))
        print("created: " + (", ".join(created) if created else "nothing (all exist)"))
    for spec in catalog(settings):
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 3_600_000} h"
        print(
            f"{spec.name:<24} {spec.partitions:>2} partitions  key={spec.key:<9} "
            f"{spec.cleanup_policy:<7} {retention:<8} {', '.join(spec.value_types)}"
        )
    return 0


def _demo_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.demo import run_demo

    return run_demo(settings, bring_up=not args.no_stack)


def _run_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.runner import parse_duration, parse_names, run_system, show_status

    if args.status:
        return show_status(settings)
    return run_system(
        settings,
        only=parse_names(args.only),
        without=parse_names(args.without),
        duration_s=parse_duration(args.duration) if args.duration else None,
    )


def _ps_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.runner import show_status

    return show_status(settings)


def _projections_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.errors import BrokerflowError
    from brokerflow.projections.rebuild import rebuild_read_models

    try:
        report = asyncio.run(rebuild_read_models(settings))
    except BrokerflowError as exc:
        print(f"rebuild failed: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def _audit_command(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from brokerflow.projections.audit import audit_lines, order_log_history

    at = None
    if args.at is not None:
        try:
            at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            print(
                f"--at {args.at!r}: not an ISO 8601 time (2026-06-25T10:32:47.123Z)",
                file=sys.stderr,
            )
            return 2
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    entries = asyncio.run(order_log_history(settings, args.order_id, args.symbol))
    if not entries:
        print(f"no event of order {args.order_id} on the order events topic", file=sys.stderr)
        return 1
    for line in audit_lines(args.order_id, entries, at, as_json=args.json):
        print(line)
    return 0


def _replay_command(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from brokerflow.errors import ConfigError
    from brokerflow.exchange.replay_log import (
        Selection,
        parse_offsets,
        parse_time,
        replay_book,
        replay_exchange,
        replay_exchange_worker,
    )

    try:
        if args.what == "book":
            if not args.symbol or not args.at:
                print("replay book: give SYMBOL and --at OFFSET|TIME", file=sys.stderr)
                return 2
            book = asyncio.run(replay_book(settings, args.symbol, args.at, args.rules, args.levels))
            if args.json:
                print(json.dumps(book))
                return 0
            print(
                f"{book['symbol']} at {book['at']}: {book['commands']} commands, "
                f"sequence {book['sequence']}"
            )
            for price, quantity, orders in reversed(book["asks"]):
                print(f"  ask {price:>14} {quantity:>14} ({orders} orders)")
            for price, quantity, orders in book["bids"]:
                print(f"  bid {price:>14} {quantity:>14} ({orders} orders)")
            return 0
        selection = Selection(
            from_offsets=parse_offsets(args.from_offset) if args.from_offset else None,
            to_offsets=parse_offsets(args.to_offset) if args.to_offset else None,
            from_time=parse_time(args.start) if args.start else None,
            to_time=parse_time(args.end) if args.end else None,
            symbol=args.symbol,
        )
        if args.worker:
            report = asyncio.run(
                replay_exchange_worker(settings, selection, args.rules, keep=args.keep)
            )
        else:
            report = asyncio.run(replay_exchange(settings, selection, args.rules))
    except ConfigError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.divergence is None else 1


def _match_command(settings: Settings, args: argparse.Namespace) -> int:
    from brokerflow.matching.replay import main as replay_main

    return replay_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brokerflow", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka/Redis/MongoDB stack")
    stack.add_argument("action", choices=["up", "down", "status", "logs"])
    stack.add_argument("service", nargs="?", help="with logs: kafka, redis or mongo")
    stack.add_argument("-n", "--lines", type=int, default=40, help="with logs: lines per log")
    stack.set_defaults(handler=_stack_command)

    topics = sub.add_parser("topics", help="list the topic catalog")
    topics.add_argument("--create", action="store_true", help="create missing topics first")
    topics.add_argument(
        "--partition-of",
        metavar="KEY",
        help="print only the partition a key (a symbol, an account) lands on, for kcat -p",
    )
    topics.add_argument(
        "--topic",
        default="order_commands",
        help="with --partition-of: the topic (default "
        "order-commands-v1; every symbol-keyed topic has the same partitions)",
    )
    topics.set_defaults(handler=_topics_command)

    demo = sub.add_parser("demo", help="the main job on the local stack")
    demo.add_argument("--no-stack", action="store_true", help="assume the stack is already up")
    demo.set_defaults(handler=_demo_command)

    run = sub.add_parser(
        "run",
        help="the whole system: stack, exchange worker, ingest, stats, API, projector, alerts, "
        "reconciler",
    )
    run.add_argument("--for", dest="duration", metavar="DURATION", help="stop after 60s, 90, 2m")
    from brokerflow.runner.services import SERVICE_NAMES

    names = ", ".join(SERVICE_NAMES)
    run.add_argument("--only", metavar="A,B", help=f"run only these services ({names})")
    run.add_argument("--without", metavar="A,B", help="run every service but these")
    run.add_argument("--status", action="store_true", help="show what runs (as brokerflow ps)")
    run.set_defaults(handler=_run_command)

    ps = sub.add_parser("ps", help="what `brokerflow run` runs: pids, uptime, restarts")
    ps.set_defaults(handler=_ps_command)

    projections = sub.add_parser(
        "projections", help="the read models: `rebuild` replays them from offset 0 and swaps"
    )
    projections.add_argument("action", choices=["rebuild"])
    projections.set_defaults(handler=_projections_command)

    audit = sub.add_parser(
        "audit", help="an order's history and its state at an instant, from the event log"
    )
    audit.add_argument("order_id", metavar="ORDER_ID")
    audit.add_argument("--at", help="the state at this instant (ISO 8601, UTC if no offset)")
    audit.add_argument("--symbol", help="read only this symbol's records (faster)")
    audit.add_argument("--json", action="store_true", help="JSON instead of lines")
    audit.set_defaults(handler=_audit_command)

    replay = sub.add_parser(
        "replay",
        help="does today's code reproduce what happened? the exchange's command log replayed "
        "and compared with its recorded events; or a book as it stood",
    )
    replay.add_argument("what", choices=["exchange", "book"])
    replay.add_argument("symbol", nargs="?", help="book: the symbol; exchange: only this key")
    replay.add_argument("--from", dest="start", metavar="TIME", help="commands from this time")
    replay.add_argument("--to", dest="end", metavar="TIME", help="commands up to this time")
    replay.add_argument("--from-offset", metavar="P:O,...", help="commands from these offsets")
    replay.add_argument("--to-offset", metavar="P:O,...", help="up to these offsets (inclusive)")
    replay.add_argument("--at", metavar="OFFSET|TIME", help="book: after this command")
    replay.add_argument(
        "--rules", help="today's rules file (default EXCHANGE_RULES_PATH, or the catalog)"
    )
    replay.add_argument(
        "--worker",
        action="store_true",
        help="run the range through a real exchange worker in a throwaway namespace",
    )
    replay.add_argument("--keep", action="store_true", help="with --worker: keep the namespace")
    replay.add_argument("--levels", type=int, default=10, help="book: levels a side")
    replay.add_argument("--json", action="store_true", help="book: JSON")
    replay.set_defaults(handler=_replay_command)

    match = sub.add_parser(
        "match", help="replay an order-command JSONL tape through the matching core", add_help=False
    )
    match.add_argument("rest", nargs=argparse.REMAINDER)
    match.set_defaults(handler=_match_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, word in enumerate(words) if not word.startswith("-")), None)
    if first is not None and words[first] == "match":
        # `match` has its own parser (--rules, --summary, -h): argparse's REMAINDER drops
        # options that come before the tape, so hand everything after the word over as is.
        from brokerflow.matching.replay import main as replay_main

        return replay_main(words[first + 1 :])
    args = build_parser().parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # aiokafka warns on every retry while a restarted broker elects partition leaders;
        # the health checks already wait for that and fail with a clear error if it never ends.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        return int(args.handler(Settings(), args))
    except BrokerflowError as exc:
        print(f"brokerflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
