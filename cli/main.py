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
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shared.errors import ConfigurationError, HooklineError
from shared.kafka_security import install_security
from shared.settings import Settings

if TYPE_CHECKING:
    from localkafka import LocalKafka

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


def _checked(service: str, command: Command) -> Command:
    """Run ``command`` after the Kafka preflight, on a secured cluster.

    Wrong credentials, an untrusted broker certificate, a missing topic or ACL then stop
    the service before it starts, with one line naming the cause (printed by
    :func:`main`). A plaintext cluster is left to the service, as before.
    """

    def run(args: argparse.Namespace, settings: Settings) -> int:
        if settings.kafka_security_protocol != "PLAINTEXT":
            from shared.errors import BrokerUnavailable
            from shared.kafka_access import preflight

            # No broker answering yet is no refusal: the service waits for one, and checks then.
            with contextlib.suppress(BrokerUnavailable):
                asyncio.run(preflight(settings, service))
        return command(args, settings)

    return run


SERVICES: dict[str, tuple[Command, str]] = {
    "ingress": (_ingress, "the public webhook endpoints"),
    "admin": (_admin, "the admin API (cluster-internal)"),
    "dispatcher": (_dispatcher, "inbound events to workflow runs"),
    "delivery": (_delivery, "lifecycle events to signed outbound webhooks"),
}


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from localkafka import LocalKafka

    if args.brokers != 1:
        return _kafka_cluster(args, settings)

    broker = LocalKafka(
        port=args.port,
        data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
        cache=settings.cache_dir / "kafka",
        secure=args.action == "start" and args.secure,
        acl_prefix=settings.topic_prefix,
    )
    if args.action == "start":
        address = broker.start()
        print(address)
        if args.secure:
            _print_secure_settings(broker, address)
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
        if status.secure:
            print(f"secured: SASL_SSL with SCRAM-SHA-512, ACLs enforced; CA {status.ca_file}")
        return 0 if status.running else 3
    return 0


def _kafka_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from localkafka.cluster import LocalCluster

    if args.brokers != 3:
        raise ConfigurationError("--brokers takes 1 or 3")
    if args.secure:
        raise ConfigurationError("--secure runs one broker; leave out --brokers 3")
    cluster = LocalCluster(
        base_port=args.port,
        folder=Path(args.data_dir).resolve() if args.data_dir else None,
        cache=settings.cache_dir / "kafka",
    )
    if args.action == "start":
        print(cluster.start())
        return 0
    if args.action == "stop":
        print("stopped" if cluster.stop() else "not running")
        return 0
    nodes = cluster.status()
    for node in nodes:
        state = f"running (pid {node.pid})" if node.running else "stopped"
        print(f"node {node.node}: {state} at {cluster.host}:{node.port}, folder {node.folder}")
    print(f"bootstrap {cluster.bootstrap}")
    return 0 if all(n.running for n in nodes) else 3


def _print_secure_settings(broker: LocalKafka, address: str) -> None:
    from localkafka.security import SUPER_USER, USERS

    files = broker.secure_files
    print(f"secured: SASL_SSL, SCRAM-SHA-512, ACLs for the prefix {broker.acl_prefix}")
    print(f"CA certificate: {files.ca}")
    for user in USERS:
        role = "super user: ACLs, anything" if user == SUPER_USER else "least privilege"
        print(f"\n# {user} ({role}); also in {files.env_file(user)}")
        for key, value in files.env(user, address).items():
            print(f"{key}={value}")


def _acls(args: argparse.Namespace, settings: Settings) -> int:
    from shared.acls import kafka_acls_commands

    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    print(f"# hookline's ACLs for the topic prefix {prefix!r}; see docs/deploy.md")
    print("# BOOTSTRAP: a listener of the cluster; admin.properties: an admin user's client config")
    for line in kafka_acls_commands(
        prefix,
        bootstrap=args.bootstrap_server or "$BOOTSTRAP",
        command_config=args.command_config or None,
        principal=lambda service: f"User:{args.user_prefix}{service}",
    ):
        print(line)
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from shared.kafka import ensure_topics
    from shared.topics import topic_registry

    topics = topic_registry(
        settings.topic_prefix,
        partitions=settings.topic_partitions,
        retry_tiers=len(settings.retry_schedule),
        audit_retention_days=settings.audit_retention_days,
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
    for name in report.skipped:
        print(f"skipped  {name} (this Kafka user may neither see nor create it)")
    return 1 if report.differences else 0


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    from cli.apply import main

    return main(args, settings)


def _rekey(args: argparse.Namespace, settings: Settings) -> int:
    from cli.rekey import main

    return main(args, settings)


def _token(args: argparse.Namespace, settings: Settings) -> int:
    import secrets

    from services.admin.auth import token_digest

    token = "hlt_" + secrets.token_urlsafe(32)
    print(f"token for {args.name} (shown once; hookline keeps only its digest): {token}")
    print("entry for HOOKLINE_ADMIN_TOKENS_FILE:")
    print(f'- {{name: {args.name}, role: {args.role}, sha256: "{token_digest(token)}"}}')
    return 0


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
        p.set_defaults(func=_checked(name, command))

    dev = sub.add_parser("dev", help="run everything locally: broker, services, demo")
    dev.add_argument("--no-demo", action="store_true", help="do not apply the demo config")
    dev.add_argument("--receiver-port", type=int, default=8090, help="the demo receiver's port")
    dev.add_argument(
        "--secure",
        action="store_true",
        help="a secured local broker (SASL_SSL, ACLs); each service with its own Kafka user",
    )
    dev.set_defaults(func=_dev)

    kafka = sub.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument(
        "--port", type=int, default=9092, help="broker port (controller: +1); with 3, the first"
    )
    kafka.add_argument("--data-dir", help="the broker's folder: its state, and its data in data/")
    kafka.add_argument(
        "--brokers",
        type=int,
        default=1,
        choices=[1, 3],
        help="3: a three-node KRaft cluster on port, port+2, port+4 (RF 3, min ISR 2)",
    )
    kafka.add_argument(
        "--secure",
        action="store_true",
        help="start: SASL_SSL (SCRAM-SHA-512 over TLS), one user per service, ACLs enforced",
    )
    kafka.set_defaults(func=_kafka)

    acls = sub.add_parser("acls", help="print each service's Kafka ACLs as kafka-acls commands")
    acls.add_argument("--prefix", help="the topic prefix (default: HOOKLINE_TOPIC_PREFIX)")
    acls.add_argument("--bootstrap-server", help="put this address in the commands")
    acls.add_argument(
        "--command-config",
        default="admin.properties",
        help="the admin client config file kafka-acls.sh reads ('' for none)",
    )
    acls.add_argument(
        "--user-prefix", default="", help="principal names: User:<user-prefix><service>"
    )
    acls.set_defaults(func=_acls)

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

    rekey = sub.add_parser(
        "rekey",
        help="seal every stored secret by the first HOOKLINE_SECRET_KEY (via the admin API)",
    )
    rekey.add_argument(
        "--url", help="the admin API (default http://127.0.0.1:$HOOKLINE_ADMIN_PORT)"
    )
    rekey.set_defaults(func=_rekey)

    token = sub.add_parser(
        "token", help="make an admin token and print its HOOKLINE_ADMIN_TOKENS_FILE entry"
    )
    token.add_argument("--name", required=True, help="who or what will use it")
    token.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    token.set_defaults(func=_token)

    from cli.opsdata import add_parsers  # argparse only: the commands import httpx when run

    add_parsers(sub, _opsdata)
    return parser


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"HOOKLINE_{'_'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings()
        # Every Kafka client this process makes authenticates as these settings say.
        install_security(settings)
        code: int = args.func(args, settings)
    except HooklineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
