"""Checks of ``deploy/Dockerfile``: hadolint, then the image's own promises.

hadolint knows Dockerfile practice in general; the rules here are what this
image promises (multi-stage, pinned base, no build tools at run time, a
non-root user, ``hookline`` as the entry point) and need no binary.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|pip wheel|python3?-dev|cargo|rustc)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages with their instructions, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0] if parts else "", name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def check_dockerfile(text: str) -> list[str]:
    stages = parse(text)
    if len(stages) < 2:
        return ["the image must be built in stages: build the wheel first, run from a second stage"]
    problems = []
    for stage in stages:
        if stage.base in {s.name for s in stages}:
            continue
        if "@sha256:" not in stage.base:
            tag = stage.base.rpartition(":")[2] if ":" in stage.base else ""
            if not tag or tag == "latest" or not re.search(r"\d+\.\d+\.\d+", tag):
                problems.append(f"FROM {stage.base}: pin the base to an exact release or a digest")
    final = stages[-1]
    runs = " ".join(rest for kw, rest in final.instructions if kw == "RUN")
    tool = BUILD_TOOLS.search(runs)
    if tool:
        problems.append(f"the final stage must not build or install build tools ({tool.group(0)})")
    if not any(kw == "COPY" and "--from=" in rest for kw, rest in final.instructions):
        problems.append("the final stage must take the built environment from the build stage")
    users = [rest for kw, rest in final.instructions if kw == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage must switch to a non-root USER")
    entry = [rest for kw, rest in final.instructions if kw == "ENTRYPOINT"]
    try:
        entrypoint = json.loads(entry[-1]) if entry else None
    except json.JSONDecodeError:
        entrypoint = None
    if entrypoint != ["hookline"]:
        problems.append('the entry point must be ENTRYPOINT ["hookline"] (exec form)')
    return problems


def packages(pyproject: str) -> list[str]:
    """The top-level packages the wheel ships: ``packages.find``'s include patterns."""
    setuptools = tomllib.loads(pyproject).get("tool", {}).get("setuptools", {})
    include = setuptools.get("packages", {}).get("find", {}).get("include", [])
    return sorted({pattern.split(".")[0].rstrip("*") for pattern in include})


def _ignored(path: str, dockerignore: str) -> bool:
    """Whether the build context leaves ``path`` out (the last matching pattern decides)."""
    ignored = False
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if fnmatch.fnmatch(path, pattern):
            ignored = not negate
    return ignored


def check_sources(dockerfile: str, pyproject: str, dockerignore: str) -> list[str]:
    """The build stage gets every package the wheel ships, and the context lets each in.

    A package missing here is missing from the image without any error at build time:
    setuptools finds what is there, and the image fails when the command imports it.
    """
    stages = parse(dockerfile)
    if not stages:
        return []
    copied: set[str] = set()
    for keyword, rest in stages[0].instructions:
        if keyword in ("COPY", "ADD") and "--from=" not in rest:
            sources = [part for part in rest.split() if not part.startswith("--")][:-1]
            copied.update(source.rstrip("/").removeprefix("./") for source in sources)
    problems = []
    for package in packages(pyproject):
        if package not in copied and "." not in copied:
            problems.append(f"the build stage does not COPY {package}/ (pyproject.toml ships it)")
        if _ignored(package, dockerignore):
            problems.append(f".dockerignore leaves {package}/ out of the build context")
    return problems


def hadolint(binary: Path, dockerfile: Path) -> list[str]:
    done = subprocess.run(
        [
            str(binary),
            *("--no-color", "--format", "json", "--failure-threshold", "style"),
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        findings = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return [f"hadolint: {done.stdout.strip() or done.stderr.strip()}"]
    problems = [f"line {f['line']}: {f['code']} {f['message']} ({f['level']})" for f in findings]
    if done.returncode != 0 and not problems:
        problems.append(f"hadolint exited {done.returncode}: {done.stderr.strip()}")
    return problems
