"""``trace.png``: a waterfall of one trace with a retry, from the spans the collector got."""

from __future__ import annotations

from pathlib import Path

from testkit.otlp import ReceivedSpan


def pick_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """A trace with a retry that succeeded, whole (from the ingress span to every POST)."""
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    for trace in by_trace.values():
        roots = [s for s in trace if s.parent_span_id is None and s.kind == "server"]
        retried = [s for s in trace if s.links]
        if roots and retried and any(s.name.startswith("node ") for s in trace):
            return trace
    raise SystemExit("no trace with a retry was received")


def render_trace(trace: list[ReceivedSpan], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in trace:
        children.setdefault(span.parent_span_id, []).append(span)
    ordered: list[tuple[int, ReceivedSpan]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            ordered.append((depth, span))
            walk(span.span_id, depth + 1)

    walk(None, 0)
    t0 = min(s.start_ns for s in trace)
    t1 = max(s.end_ns for s in trace)
    colors = {
        "hookline-ingress": "#5794f2",
        "hookline-dispatcher": "#b877d9",
        "hookline-delivery": "#73bf69",
        "hookline-admin": "#ff9830",
    }
    fig, ax = plt.subplots(figsize=(16, 0.34 * len(ordered) + 1.6), dpi=100)
    fig.patch.set_facecolor("#111217")
    ax.set_facecolor("#181b1f")
    index = {s.span_id: n for n, (_, s) in enumerate(ordered)}
    names = blended_transform_factory(fig.transFigure, ax.transData)
    for n, (depth, span) in enumerate(ordered):
        start = (span.start_ns - t0) / 1e6
        length = max((span.end_ns - span.start_ns) / 1e6, (t1 - t0) / 1e6 / 400)
        color = "#f2495c" if span.error else colors.get(span.service, "#9fa7b3")
        ax.barh(n, length, left=start, color=color, height=0.6)
        status = span.attributes.get("http.response.status_code")
        extra = f"  {status}" if status else ""
        attempt = span.attributes.get("hookline.delivery.attempt")
        if attempt:
            extra += f"  attempt {attempt}"
        node = span.attributes.get("hookline.event.type") if span.name.startswith("process") else ""
        label = f"{span.service.removeprefix('hookline-')}: {span.name}"
        label += f"  [{node}]" if node else ""
        ax.text(
            0.008 + 0.012 * depth,
            n,
            label + extra,
            color="#d8d9da",
            fontsize=8,
            ha="left",
            va="center",
            family="monospace",
            transform=names,
        )
        ax.text(
            start + length,
            n,
            f" {(span.end_ns - span.start_ns) / 1e6:.1f} ms",
            color="#9fa7b3",
            fontsize=7,
            va="center",
        )
        for _, linked in span.links:
            if linked in index:
                ax.annotate(
                    "",
                    xy=(start, n),
                    xytext=(start, index[linked]),
                    arrowprops={"arrowstyle": "->", "color": "#fade2a", "lw": 1.2},
                )
    ax.set_ylim(len(ordered) - 0.4, -0.6)
    ax.set_yticks([])
    ax.set_xlim(0, (t1 - t0) / 1e6 * 1.08)
    ax.set_xlabel("milliseconds since the provider's POST reached the ingress", color="#9fa7b3")
    ax.tick_params(colors="#9fa7b3", labelsize=8)
    ax.grid(axis="x", color="#2c3235", linewidth=0.6)
    for side in ax.spines.values():
        side.set_color("#2c3235")
    fig.text(
        0.008,
        0.985,
        f"trace {trace[0].trace_id}: {len(trace)} spans as the OTLP receiver got them\n"
        "red: a failed request; yellow arrow: a retry's link to the attempt before it",
        color="#d8d9da",
        fontsize=10,
        va="top",
    )
    fig.subplots_adjust(left=0.42, right=0.98, top=0.93, bottom=0.08)
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)
