"""Benchmarks against the real broker: ``make bench`` runs every module listed in BENCHMARKS.

Each benchmark module has ``async def run(bootstrap: str) -> dict`` returning
one result: ``{"name": ..., "figures": {...}, "baseline": {...} | None,
"ratio": float | None, "aim": str}``. Results are printed as a table and
written to ``bench-results.json`` at the project root.
"""

BENCHMARKS: tuple[str, ...] = (
    "bench.ingress",
    "bench.dispatcher",
    "bench.delivery",
    "bench.e2e",
    "bench.scaling",
    "bench.opsdata",
    "bench.e2e_secure",
    "bench.tracing",
)
