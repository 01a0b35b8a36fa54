"""The fault table: one phase's figures, and the table printed from the phases'."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tests.faults.load import Post


@dataclass
class Figures:
    """One phase's row of the fault table."""

    fault: str
    seconds: float = 0.0
    offered: int = 0
    accepted: int = 0
    refused_503: int = 0
    no_answer: int = 0
    longest_no_202: float = 0.0
    lost: int = 0
    duplicate_runs: int = 0
    missing_runs: int = 0
    deliveries_missing: int = 0
    split_ids: int = 0
    uncommitted: int = 0
    takeover: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicate_runs
            or self.missing_runs
            or self.deliveries_missing
            or self.split_ids
            or self.uncommitted
        )


def load_figures(figures: Figures, posts: list[Post]) -> None:
    """Offered, accepted, refused and the longest stretch without a 202, from the posts."""
    figures.offered = len(posts)
    figures.accepted = sum(1 for p in posts if p.status == 202)
    figures.refused_503 = sum(1 for p in posts if p.status == 503)
    figures.no_answer = sum(1 for p in posts if p.status == 0)
    if posts:
        times = sorted(p.answered for p in posts if p.status == 202)
        edges = [posts[0].sent, *times, max(p.answered for p in posts)]
        figures.longest_no_202 = max(b - a for a, b in itertools.pairwise(edges))


def print_table(rows: list[Figures], rate: float) -> str:
    head = (
        f"{'fault':<18}{'s':>5}{'/s':>5}{'offered':>8}{'202':>8}{'503':>6}{'no ans':>7}{'max no-202 s':>13}"
        f"{'lost':>6}{'dup runs':>9}{'missing':>8}{'takeover s':>11}"
    )
    lines = [
        f"fault table: {rate:g} posts/s asked; /s is what was offered",
        head,
        "-" * len(head),
    ]
    for f in rows:
        take = "" if f.takeover is None else f"{f.takeover:.1f}"
        lines.append(
            f"{f.fault:<18}{f.seconds:>5.0f}{f.offered / max(f.seconds, 1e-9):>5.0f}"
            f"{f.offered:>8}{f.accepted:>8}{f.refused_503:>6}{f.no_answer:>7}"
            f"{f.longest_no_202:>13.1f}{f.lost:>6}{f.duplicate_runs:>9}"
            f"{f.deliveries_missing + f.missing_runs:>8}{take:>11}"
        )
        lines += [f"    {note}" for note in f.notes]
    text = "\n".join(lines)
    print("\n" + text)
    return text
