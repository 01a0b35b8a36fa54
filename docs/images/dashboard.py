"""``dashboard.png``: every panel of the Grafana dashboard, its PromQL run against
Prometheus and drawn on the dashboard's grid with matplotlib."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus import query_range

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "hookline.json"
)


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


async def render_dashboard(prom: str, start: float, end: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    doc = json.loads(DASHBOARD.read_text())
    panels = doc["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_px, col_px = 30, 70
    fig = plt.figure(figsize=(24 * col_px / 100, (rows * unit_px + 60) / 100), dpi=100)
    fig.patch.set_facecolor("#111217")
    fig.text(
        0.01,
        0.995,
        "hookline — the dashboard's queries over real traffic, rendered from Prometheus",
        color="#d8d9da",
        fontsize=14,
        va="top",
    )
    height = rows * unit_px + 60
    units = {
        "reqps": lambda v: f"{v:.1f}/s",
        "ops": lambda v: f"{v:.1f}/s",
        "s": lambda v: f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s",
        "percentunit": lambda v: f"{v * 100:.0f}%",
        "short": lambda v: f"{v:.0f}" if v >= 10 else f"{v:.2g}",
    }
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24 + 0.004, g["w"] / 24 - 0.008
        top = (g["y"] * unit_px + 40) / height
        if panel["type"] == "row":
            fig.text(
                left,
                1 - top - 0.004,
                panel["title"],
                color="#d8d9da",
                fontsize=12,
                weight="bold",
                va="top",
            )
            continue
        bottom = 1 - (top + g["h"] * unit_px / height) + 0.012
        # Room on the left for the value axis' labels, inside the panel.
        pad = 0.028
        ax = fig.add_axes((left + pad, bottom, width - pad, g["h"] * unit_px / height - 0.035))
        ax.set_facecolor("#181b1f")
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        fmt = units.get(panel["fieldConfig"]["defaults"].get("unit", "short"), units["short"])
        if panel["type"] == "stat":
            series = await query_range(prom, panel["targets"][0]["expr"], start, end)
            values = [float(v) for _, v in series[0]["values"]] if series else []
            last = next((v for v in reversed(values) if v == v), float("nan"))
            ax.text(
                0.5,
                0.55,
                fmt(last),
                color="#73bf69",
                fontsize=34,
                ha="center",
                va="center",
                transform=ax.transAxes,
                weight="bold",
            )
            if values:
                ax.plot(range(len(values)), values, color="#73bf69", alpha=0.35)
                ax.set_ylim(0, 1.05)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        stacked = "stacking" in panel["fieldConfig"]["defaults"].get("custom", {})
        lines: list[tuple[str, list[float], list[float]]] = []
        for target in panel["targets"]:
            for series in await query_range(prom, target["expr"], start, end):
                xs = [float(t) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                lines.append((_legend(target.get("legendFormat", ""), series["metric"]), xs, ys))
        from datetime import datetime

        for label, xs, ys in sorted(lines):
            when = [datetime.fromtimestamp(x) for x in xs]
            ax.plot(when, ys, label=label, linewidth=1.4)
            if stacked:
                ax.fill_between(when, ys, alpha=0.12)
        if not lines:
            ax.text(0.5, 0.5, "no data", color="#9fa7b3", ha="center", transform=ax.transAxes)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, f=fmt: f(v)))
        ax.grid(color="#2c3235", linewidth=0.6)
        if lines:
            ax.legend(
                fontsize=7,
                loc="upper left",
                facecolor="#181b1f",
                edgecolor="#2c3235",
                labelcolor="#d8d9da",
                ncol=3 if len(lines) <= 9 else 9,
                framealpha=0.8,
            )
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)
