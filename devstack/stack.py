"""``hookline dev``: everything on one machine, for a first look and for development.

Start order: the local broker (unless ``HOOKLINE_KAFKA_BOOTSTRAP_SERVERS`` is
set), the topics, a small receiver on loopback, the ingress (with the admin
API), the dispatcher with the local engine, and the delivery service; then the
demo configuration (``deploy/examples/dev.yaml``). Ctrl-C stops them in the
reverse order: intake first, so nothing is accepted that cannot be handled.

Credentials for development (admin token, secret key, demo secrets) are made
once and kept in ``.cache/dev/credentials.json`` so the config topic stays
readable across restarts.
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

from shared.crypto import generate_key, generate_subscription_secret
from shared.kafka import ensure_topics
from shared.localkafka import PROJECT_ROOT, LocalKafka
from shared.processes import HOOKLINE, ServiceProcess
from shared.settings import Settings
from shared.topics import topic_registry

STATE = PROJECT_ROOT / ".cache" / "dev"
DEMO_FILE = PROJECT_ROOT / "deploy" / "examples" / "dev.yaml"
RECEIVER_PORT = 8090

DEMO_PUSH = {
    "ref": "refs/heads/main",
    "before": "0" * 40,
    "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "repository": {"id": 1296269, "full_name": "octo-org/hello-world"},
    "pusher": {"name": "octocat"},
    "head_commit": {"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "Update README"},
}


def _credentials() -> dict[str, str]:
    path = STATE / "credentials.json"
    if path.exists():
        stored: dict[str, str] = orjson.loads(path.read_bytes())
        return stored
    STATE.mkdir(parents=True, exist_ok=True)
    creds = {
        "admin_token": "dev_" + secrets.token_urlsafe(24),
        "secret_key": generate_key(),
        "github_secret": secrets.token_hex(20),
        "receiver_secret": generate_subscription_secret(),
    }
    path.write_bytes(orjson.dumps(creds, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return creds


def _service_env(bootstrap: str, creds: dict[str, str], settings: Settings) -> dict[str, str]:
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
        "HOOKLINE_DEV_RECEIVER_URL": f"http://127.0.0.1:{RECEIVER_PORT}/hooks/demo",
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_LOG_FORMAT": os.environ.get("HOOKLINE_LOG_FORMAT", "text"),
    }


def _demo_request(settings: Settings, creds: dict[str, str]) -> tuple[Path, str, str]:
    body = orjson.dumps(DEMO_PUSH)
    path = STATE / "push.json"
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
    return path, trigger, show


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    creds = _credentials()
    broker: LocalKafka | None = None
    if "HOOKLINE_KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        bootstrap = settings.kafka_bootstrap_servers
        print(f"kafka      {bootstrap} (HOOKLINE_KAFKA_BOOTSTRAP_SERVERS)", flush=True)
    else:
        broker = LocalKafka()
        print("kafka      starting the local broker …", flush=True)
        bootstrap = await asyncio.to_thread(broker.start)
        print(f"kafka      {bootstrap} (local broker, data in {broker.data_dir})", flush=True)
    await ensure_topics(
        bootstrap,
        topic_registry(
            settings.topic_prefix,
            partitions=settings.topic_partitions,
            retry_tiers=len(settings.retry_schedule),
        ),
    )
    env = _service_env(bootstrap, creds, settings)
    out = sys.stdout
    # Started in this order, stopped in the reverse: the receiver and delivery are
    # up before anything can produce events, the ingress last (and stopped first).
    ports = {
        "delivery": settings.delivery_port,
        "dispatcher": settings.dispatcher_port,
        "ingress": settings.admin_port,  # ready once the admin API's config view is
    }
    children = [
        ServiceProcess(
            "receiver",
            [sys.executable, "-m", "shared.echo_receiver", "--port", str(RECEIVER_PORT)],
            env=env,
            ready_url=f"http://127.0.0.1:{RECEIVER_PORT}/",
            echo=out,
        ),
        *(
            ServiceProcess(
                name,
                [*HOOKLINE, name],
                env=env,
                ready_url=f"http://127.0.0.1:{port}/readyz",
                echo=out,
            )
            for name, port in ports.items()
        ),
    ]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    code = 0
    try:
        for child in children:
            await child.start()
            await child.wait_ready(timeout=120)
        if not args.no_demo:
            await _apply_demo(env)
        _banner(settings, creds)
        waiters = [asyncio.create_task(c.proc.wait()) for c in children if c.proc]
        stop_task = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([stop_task, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if stop_task not in done:
            failed = [c.name for c in children if not c.running]
            print(f"hookline dev: {', '.join(failed)} exited; stopping everything", flush=True)
            code = 1
        for task in [stop_task, *waiters]:
            task.cancel()
    except (RuntimeError, TimeoutError) as exc:
        print(f"hookline dev: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        print("stopping   ingress, dispatcher, delivery, receiver …", flush=True)
        for child in reversed(children):
            await child.stop(grace=settings.shutdown_grace + 5)
        if broker is not None:
            await asyncio.to_thread(broker.stop)
            print("kafka      stopped", flush=True)
    return code


async def _apply_demo(env: dict[str, str]) -> None:
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
        print(f"{'apply':<10} | {line}", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"applying {DEMO_FILE} failed")


def _banner(settings: Settings, creds: dict[str, str]) -> None:
    _, trigger, show = _demo_request(settings, creds)
    print(
        f"""
──────────────────────────────────────────────────────────────────────────────
 hookline is running
   webhooks (public)   http://127.0.0.1:{settings.ingress_port}/webhooks/{{id}}[/github|/gitlab|/slack]
   admin API           http://127.0.0.1:{settings.admin_port}   (Authorization: Bearer {creds["admin_token"]})
   demo receiver       http://127.0.0.1:{RECEIVER_PORT}/   (what it verified)

 1. Trigger the demo workflow with a signed GitHub push:

{trigger}

 2. See the signed deliveries it caused:

{show}

 Ctrl-C stops everything.
──────────────────────────────────────────────────────────────────────────────
""",
        flush=True,
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
