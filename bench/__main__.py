"""Run the benchmarks: ``python -m bench [name ...]``."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]


def _broker() -> tuple[str, Any]:
    env = os.environ.get("HOOKLINE_KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env, None
    from localkafka import LocalKafka
    from testkit import free_port_pair

    data = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    broker = LocalKafka(port=free_port_pair(), data_dir=data)
    return broker.start(), (broker, data)


def _table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'benchmark':<28} {'figure':<34} {'value':>14} {'baseline':>14} {'ratio':>7}"]
    lines.append("-" * len(lines[0]))
    for result in results:
        baseline = result.get("baseline") or {}
        first = True
        for key, value in result.get("figures", {}).items():
            base = baseline.get(key)
            ratio = ""
            if first and result.get("ratio") is not None:
                ratio = f"{result['ratio']:.2f}"
            lines.append(
                f"{result['name'] if first else '':<28} {key:<34} {_fmt(value):>14} "
                f"{_fmt(base) if base is not None else '':>14} {ratio:>7}"
            )
            first = False
        if result.get("aim"):
            lines.append(f"{'':<28} aim: {result['aim']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str]) -> int:
    wanted = [b for b in BENCHMARKS if not argv or b.split(".")[-1] in argv]
    bootstrap, owned = _broker()
    results: list[dict[str, Any]] = []
    try:
        for name in wanted:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            print(f"running {name} …", flush=True)
            results.append(asyncio.run(module.run(bootstrap)))
    finally:
        if owned is not None:
            owned[0].stop()
            shutil.rmtree(owned[1], ignore_errors=True)
    print(_table(results))
    (ROOT / "bench-results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
