"""The ``hookline`` console script.

Each subcommand imports what it runs when it runs, so ``hookline kafka status``
does not pay for starlette or httpx. The imports are plain: a broken install
stops the command with the import's error, never a silent fallback. Errors from
hookline's own tree become one clear line on stderr and exit status 2; nothing
prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.errors import HooklineError
from shared.settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]


def _ingress(args: argparse.Namespace, settings: Settings) -> int:
    from services.ingress.main import run

    return run(settings)


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from services.admin.main import run

    return run(settings)


def _dispatcher(args: argparse.Namespace, settings: Settings) -> int:
    from services.dispatcher.main import run

    return run(settings)


def _delivery(args: argparse.Namespace, settings: Settings) -> int:
    from services.delivery.main import run

    return run(settings)


SERVICES: dict[str, tuple[Command, str]] = {
    "ingress": (_ingress, "the public webhook endpoints"),
    "admin": (_admin, "the admin API (cluster-internal)"),
    "dispatcher": (_dispatcher, "inbound events to workflow runs"),
    "delivery": (_delivery, "lifecycle events to signed outbound webhooks"),
}


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from localkafka import LocalKafka

    broker = LocalKafka(
        port=args.port,
        data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
        cache=settings.cache_dir / "kafka",
    )
    if args.action == "start":
        address = broker.start()
        print(address)
    elif args.action == "stop":
        print("stopped" if broker.stop() else "not running")
    else:
        status = broker.status()
        state = "running" if status.running else "stopped"
        pid = f" (pid {status.pid})" if status.pid else ""
        print(
            f"{state}{pid}: Apache Kafka {status.version or '(jars not fetched)'} "
            f"at {status.bootstrap}, data in {status.data_dir}"
        )
        return 0 if status.running else 3
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from shared.kafka import ensure_topics
    from shared.topics import topic_registry

    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
    )
    report = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap_servers, topics, replication_factor=settings.replication_factor
        )
    )
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    for line in report.differences:
        print(f"differs  {line}")
    return 1 if report.differences else 0


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    from cli.apply import main

    return main(args, settings)


def _opsdata(args: argparse.Namespace, settings: Settings) -> int:
    from cli.opsdata import run

    return run(args, settings)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import main

    return main(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="hookline: webhooks in and out, over Apache Kafka."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (command, what) in SERVICES.items():
        p = sub.add_parser(name, help=f"run the {name} service: {what}")
        p.set_defaults(func=command)

    dev = sub.add_parser("dev", help="run everything locally: broker, services, demo")
    dev.add_argument("--no-demo", action="store_true", help="do not apply the demo config")
    dev.add_argument("--receiver-port", type=int, default=8090, help="the demo receiver's port")
    dev.set_defaults(func=_dev)

    kafka = sub.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--port", type=int, default=9092, help="broker port (controller: +1)")
    kafka.add_argument("--data-dir", help="where the broker keeps its data")
    kafka.set_defaults(func=_kafka)

    topics = sub.add_parser("topics", help="create missing topics; report settings that differ")
    topics.set_defaults(func=_topics)

    apply = sub.add_parser("apply", help="apply a YAML file of webhooks, subscriptions, workflows")
    apply.add_argument("-f", "--file", required=True, help="the YAML file")
    apply.add_argument("--dry-run", action="store_true", help="show what would change")
    apply.add_argument("--prune", action="store_true", help="delete what the file no longer lists")
    apply.add_argument(
        "--url", help="the admin API (default http://127.0.0.1:$HOOKLINE_ADMIN_PORT)"
    )
    apply.set_defaults(func=_apply)

    from cli.opsdata import add_parsers  # argparse only: the commands import httpx when run

    add_parsers(sub, _opsdata)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        code: int = args.func(args, settings)
    except HooklineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
