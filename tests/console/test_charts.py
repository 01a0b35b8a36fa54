"""The overview's SVG charts: figures in words for screen readers, nothing the CSP forbids."""

from __future__ import annotations

from services.admin.console.charts import Series, bars, lines


def test_stacked_bars_scale_to_a_round_top_and_say_their_totals() -> None:
    svg = str(bars("c", "Requests <per minute>", [Series("ok", "ok", [1, 2, None, 4])]))
    assert '<title id="c-t">Requests &lt;per minute&gt;</title>' in svg
    assert "ok: 7 in all." in svg
    assert svg.count("<rect ") == 3, "no bar for a minute without data"
    assert ">5</text>" in svg, "the axis tops at 5, the round number above 4"
    assert "style=" not in svg and "<script" not in svg


def test_lines_leave_a_gap_where_a_minute_has_no_value() -> None:
    svg = str(lines("l", "Latency", [Series("p50", "line-a", [10, 20, None, 30])], " ms"))
    assert svg.count("<polyline ") == 1 and svg.count("<circle ") == 1
    assert "p50: latest 30 ms, highest 30 ms." in svg
