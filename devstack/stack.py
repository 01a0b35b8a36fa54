"""``hookline dev``: everything on one machine, for a first look and for development.

Start order: the local broker (unless ``HOOKLINE_KAFKA_BOOTSTRAP_SERVERS`` is
set), the topics, a small receiver on loopback, the delivery service, the
dispatcher with the local engine, the admin API, and the ingress; then the demo
configuration (``demo.yaml`` beside this module). Ctrl-C stops them in the
reverse order: intake first, so nothing is accepted that cannot be handled, and
the broker last.

The broker listens on 9092 unless something else holds that port: then the next
free pair of ports is taken, and the banner says which. A broker of ours already
running there (``hookline kafka start``) is used and left running. Children, the
broker included, never outlive this process (see :mod:`devstack.supervisor`),
whatever happens to its output.

Credentials for development (admin token, secret key, demo secrets) are made
once and kept in ``<cache>/dev/credentials.json`` (``.cache`` under the working
directory by default), so the config topic stays readable across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import secrets
import signal
import sys
from pathlib import Path

import orjson

from devstack.supervisor import HOOKLINE, Output, ServiceProcess, die_with_parent
from localkafka import LocalKafka, port_taken
from shared.crypto import generate_key, generate_subscription_secret
from shared.errors import ConfigurationError, HooklineError
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry

DEMO_FILE = Path(__file__).with_name("demo.yaml")
DEFAULT_BROKER_PORT = 9092

DEMO_PUSH = {
    "ref": "refs/heads/main",
    "before": "0" * 40,
    "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "repository": {"id": 1296269, "full_name": "octo-org/hello-world"},
    "pusher": {"name": "octocat"},
    "head_commit": {"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "Update README"},
}


def _credentials(state: Path) -> dict[str, str]:
    path = state / "credentials.json"
    if path.exists():
        stored: dict[str, str] = orjson.loads(path.read_bytes())
        return stored
    state.mkdir(parents=True, exist_ok=True)
    creds = {
        "admin_token": "dev_" + secrets.token_urlsafe(24),
        "secret_key": generate_key(),
        "github_secret": secrets.token_hex(20),
        "receiver_secret": generate_subscription_secret(),
    }
    path.write_bytes(orjson.dumps(creds, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return creds


def _service_env(
    bootstrap: str, creds: dict[str, str], settings: Settings, receiver_port: int
) -> dict[str, str]:
    return {
        "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOOKLINE_ADMIN_TOKEN": os.environ.get("HOOKLINE_ADMIN_TOKEN", creds["admin_token"]),
        "HOOKLINE_SECRET_KEY": os.environ.get("HOOKLINE_SECRET_KEY", creds["secret_key"]),
        "HOOKLINE_ENGINE": os.environ.get("HOOKLINE_ENGINE", "local"),
        # Development only: the demo receiver listens on plain http on loopback.
        "HOOKLINE_ALLOW_PRIVATE_DESTINATIONS": "1",
        "HOOKLINE_ALLOW_INSECURE_URLS": "1",
        "HOOKLINE_HOST": os.environ.get("HOOKLINE_HOST", "127.0.0.1"),
        "HOOKLINE_DEV_GITHUB_SECRET": creds["github_secret"],
        "HOOKLINE_DEV_RECEIVER_SECRET": creds["receiver_secret"],
        "HOOKLINE_DEV_RECEIVER_URL": f"http://127.0.0.1:{receiver_port}/hooks/demo",
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_LOG_FORMAT": os.environ.get("HOOKLINE_LOG_FORMAT", "text"),
        "HOOKLINE_ENV": os.environ.get("HOOKLINE_ENV", "development"),
    }


def _demo_request(settings: Settings, creds: dict[str, str], state: Path) -> tuple[str, str]:
    body = orjson.dumps(DEMO_PUSH)
    path = state / "push.json"
    path.write_bytes(body)
    signature = hmac.new(creds["github_secret"].encode(), body, hashlib.sha256).hexdigest()
    host = f"http://127.0.0.1:{settings.ingress_port}"
    trigger = (
        f"curl -i -X POST {host}/webhooks/demo-github/github \\\n"
        "     -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \\\n"
        f"     -H \"X-GitHub-Delivery: $(python3 -c 'import uuid; print(uuid.uuid4())')\" \\\n"
        f"     -H 'X-Hub-Signature-256: sha256={signature}' \\\n"
        f"     --data-binary @{path}"
    )
    admin = f"http://127.0.0.1:{settings.admin_port}"
    show = f"curl -s -H 'Authorization: Bearer {creds['admin_token']}' {admin}/v1/deliveries"
    return trigger, show


def local_broker(
    cache: Path, host: str = "127.0.0.1", *, secure: bool = False, acl_prefix: str = "hookline."
) -> tuple[LocalKafka, str | None]:
    """The development broker: on 9092, or on the first free port pair after it.

    A broker of ours already running on a port is used again. Returns the broker and,
    when it is not on 9092, why (for the banner).
    """
    port = DEFAULT_BROKER_PORT
    for candidate in range(DEFAULT_BROKER_PORT, DEFAULT_BROKER_PORT + 200, 2):
        broker = LocalKafka(host=host, port=candidate, cache=cache / "kafka")
        status = broker.status()
        if status.running and status.secure == secure:
            port = candidate
            break
        if not port_taken(host, candidate) and not port_taken(host, candidate + 1):
            port = candidate
            break
    else:
        raise ConfigurationError(
            f"no free port pair for the broker from {DEFAULT_BROKER_PORT} to "
            f"{DEFAULT_BROKER_PORT + 199}; set HOOKLINE_KAFKA_BOOTSTRAP_SERVERS to use a running Kafka"
        )
    note = None
    if port != DEFAULT_BROKER_PORT:
        taken = DEFAULT_BROKER_PORT if port_taken(host, DEFAULT_BROKER_PORT) else None
        what = f"port {taken}" if taken else f"port {DEFAULT_BROKER_PORT + 1} (the controller's)"
        note = f"{what} is taken by another process; using {port}"
    # A secured broker keeps a folder of its own: a plaintext broker's data has no users.
    folder = cache / "kafka" / (f"{port}-secure" if secure else str(port))
    kafka = LocalKafka(
        host=host,
        port=port,
        cache=cache / "kafka",
        data_dir=folder,
        secure=secure,
        acl_prefix=acl_prefix,
    )
    return kafka, note


def _secure_env(broker: LocalKafka | None, service: str, bootstrap: str) -> dict[str, str]:
    """``--secure``: the service's own Kafka user and the broker's CA; nothing otherwise."""
    if broker is None or not broker.secure or service == "receiver":
        return {}
    return broker.secure_files.env(service, bootstrap)


async def _run(
    args: argparse.Namespace,
    settings: Settings,
    out: Output,
    broker: LocalKafka | None,
    bootstrap: str,
    kafka: str,
) -> int:
    state = settings.cache_dir.resolve() / "dev"
    creds = _credentials(state)
    await ensure_topics(
        bootstrap,
        topic_registry(
            settings.topic_prefix,
            partitions=settings.topic_partitions,
            retry_tiers=len(settings.retry_schedule),
        ),
        security=broker.secure_files.security("topics") if broker and broker.secure else None,
    )
    env = _service_env(bootstrap, creds, settings, args.receiver_port)
    # Started in this order, stopped in the reverse: the receiver and delivery are
    # up before anything can produce events, the ingress last (and stopped first).
    # The port each service answers /readyz on (the ingress: its internal one).
    ports = {
        "delivery": settings.delivery_port,
        "dispatcher": settings.dispatcher_port,
        "admin": settings.admin_port,
        "ingress": settings.ingress_internal_port,
    }
    children = [
        ServiceProcess(
            "receiver",
            [sys.executable, "-m", "devstack.receiver", "--port", str(args.receiver_port)],
            env=env,
            ready_url=f"http://127.0.0.1:{args.receiver_port}/",
            echo=out,
        ),
        *(
            ServiceProcess(
                name,
                [*HOOKLINE, name],
                env={**env, **_secure_env(broker, name, bootstrap)},
                ready_url=f"http://127.0.0.1:{port}/readyz",
                echo=out,
            )
            for name, port in ports.items()
        ),
    ]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stopping.set)
    code = 0
    try:
        for child in children:
            await child.start()
            await _ready_or_stopped(child, stopping)
            if stopping.is_set():
                return 130
        if not args.no_demo:
            await _apply_demo(env, out)
        out.write(_banner(settings, creds, state, args.receiver_port, kafka))
        waiters = [asyncio.create_task(c.proc.wait()) for c in children if c.proc]
        stop_task = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([stop_task, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if stop_task not in done:
            failed = [c.name for c in children if not c.running]
            out.write(f"hookline dev: {', '.join(failed)} exited; stopping everything\n")
            code = 1
        for task in [stop_task, *waiters]:
            task.cancel()
    except (RuntimeError, TimeoutError) as exc:
        out.write(f"hookline dev: {exc}\n")
        code = 1
    finally:
        out.write("stopping   ingress, admin, dispatcher, delivery, receiver …\n")
        for child in reversed(children):
            await child.stop(grace=settings.shutdown_grace + 5)
    return code


async def _ready_or_stopped(child: ServiceProcess, stopping: asyncio.Event) -> None:
    """Wait for ``child`` to be ready, or for Ctrl-C: start-up can be stopped too."""
    ready = asyncio.create_task(child.wait_ready(timeout=120))
    stopped = asyncio.create_task(stopping.wait())
    await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ready.done():
        ready.cancel()
        return
    ready.result()


async def _apply_demo(env: dict[str, str], out: Output) -> None:
    proc = await asyncio.create_subprocess_exec(
        *HOOKLINE,
        "apply",
        "-f",
        str(DEMO_FILE),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    for line in output.decode(errors="replace").splitlines():
        out.write(f"{'apply':<10} | {line}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"applying {DEMO_FILE} failed")


def _banner(
    settings: Settings, creds: dict[str, str], state: Path, receiver_port: int, kafka: str
) -> str:
    trigger, show = _demo_request(settings, creds, state)
    return f"""
──────────────────────────────────────────────────────────────────────────────
 hookline is running
   webhooks (public)   http://127.0.0.1:{settings.ingress_port}/webhooks/{{id}}[/github|/gitlab|/slack]
   admin API           http://127.0.0.1:{settings.admin_port}   (Authorization: Bearer {creds["admin_token"]})
   console             http://127.0.0.1:{settings.admin_port}/console/   (sign in with that token)
   demo receiver       http://127.0.0.1:{receiver_port}/   (what it verified)
   kafka               {kafka}

 1. Trigger the demo workflow with a signed GitHub push:

{trigger}

 2. See the signed deliveries it caused:

{show}

 Ctrl-C stops everything.
──────────────────────────────────────────────────────────────────────────────
"""


START_ATTEMPTS = 3


def _local_broker(
    args: argparse.Namespace, settings: Settings, out: Output
) -> tuple[LocalKafka, bool, str]:
    """The development broker, running: (broker, whether this run started it, banner line).

    Started here, before the event loop (the start-up wait runs a loop of its own),
    from the main thread: the broker's death signal is tied to the thread that forks
    it, and this one lives as long as the process. When another process takes the
    chosen ports between the choice and the broker's start (another ``hookline dev``
    starting at the same moment), the next free pair is tried.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        broker, note = local_broker(
            settings.cache_dir.resolve(),
            secure=getattr(args, "secure", False),
            acl_prefix=settings.topic_prefix,
        )
        if note:
            out.write(f"kafka      {note}\n")
        if broker.status().running:
            # Started by `hookline kafka start`: used, and left running at the end.
            return broker, False, f"{broker.bootstrap} (local broker, already running)"
        out.write("kafka      starting the local broker …\n")
        try:
            bootstrap = broker.start(preexec_fn=die_with_parent())
        except HooklineError:
            broker.stop()
            lost = port_taken(broker.host, broker.port) or port_taken(broker.host, broker.port + 1)
            if not lost or attempt == START_ATTEMPTS:
                raise
            out.write(f"kafka      port {broker.port} was taken meanwhile; trying the next\n")
            continue
        except BaseException:  # Ctrl-C while it starts: stop it before going
            broker.stop()
            raise
        return broker, True, f"{bootstrap} (local broker{f'; {note}' if note else ''})"
    raise AssertionError("unreachable")


def main(args: argparse.Namespace, settings: Settings) -> int:
    out = Output(sys.stdout)
    started: LocalKafka | None = None
    broker: LocalKafka | None = None
    try:
        if "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS" in os.environ:
            bootstrap = settings.kafka_bootstrap_servers
            kafka = f"{bootstrap} (HOOKLINE_KAFKA_BOOTSTRAP_SERVERS)"
            out.write(f"kafka      {kafka}\n")
        else:
            broker, ours, kafka = _local_broker(args, settings, out)
            started = broker if ours else None
            bootstrap = broker.bootstrap
            out.write(f"kafka      {kafka}, data in {broker.data_dir}\n")
        return asyncio.run(_run(args, settings, out, broker, bootstrap, kafka))
    finally:
        if started is not None:
            started.stop()
            out.write("kafka      stopped\n")
