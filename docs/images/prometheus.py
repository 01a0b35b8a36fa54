"""Prometheus (the ``prometheus`` binary) scraping the stack's ``/metrics``, and its range
queries."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.stack import Stack, free_port


def start_prometheus(stack: Stack, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    targets = {
        "hookline-ingress": stack.replicas["ingress-0"].ports["ingress"],
        "hookline-admin": stack.replicas["admin-0"].ports["admin"],
        "hookline-dispatcher": stack.replicas["dispatcher-0"].ports["dispatcher"],
        "hookline-delivery": stack.replicas["delivery-0"].ports["delivery"],
    }
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))
    process = subprocess.Popen(
        [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    return process, f"http://127.0.0.1:{port}"


async def query_range(prom: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{prom}/api/v1/query_range",
            params={
                "query": expr.replace("$__rate_interval", "30s"),
                "start": start,
                "end": end,
                "step": 10,
            },
        )
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result
