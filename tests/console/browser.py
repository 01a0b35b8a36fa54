"""Debian's Chromium driven by Playwright, screenshots per step, and the axe-core check.

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium`` (the
Makefile installs it when missing), launched headless with a fresh profile folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # 4.14.1


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    if shutil.which("chromium") is None and shutil.which(CHROMIUM) is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


@dataclass
class Steps:
    """Numbered screenshots under the test's output folder, and an axe check per page."""

    folder: Path
    n: int = 0
    checked: set[str] = field(default_factory=set)
    findings: list[str] = field(default_factory=list)

    async def shot(self, page: Page, step: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def axe(self, page: Page, name: str) -> None:
        """Run axe-core on the page; note serious and critical violations (once per page)."""
        if name in self.checked:
            return
        self.checked.add(name)
        if not await page.evaluate("typeof window.axe !== 'undefined'"):
            # Through the DevTools protocol: the pages' policy (rightly) refuses a script tag
            # with inline content, which is what add_script_tag would insert.
            await page.evaluate(f"() => {{ {axe_source()}\n; return true; }}")
        result: dict[str, Any] = await page.evaluate(
            "axe.run(document, {resultTypes: ['violations']})"
        )
        for v in result["violations"]:
            if v["impact"] in ("serious", "critical"):
                targets = [n["target"] for n in v["nodes"][:3]]
                self.findings.append(f"{name}: {v['id']} ({v['impact']}) at {targets}")


@functools.cache
def axe_source() -> str:
    return AXE.read_text()


def axe_is_pinned() -> None:
    digest = hashlib.sha256(AXE.read_bytes()).hexdigest()
    assert digest == AXE_SHA256, "tests/console/vendor/axe.min.js is not the pinned axe-core"
