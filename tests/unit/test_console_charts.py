"""The console's server-side charts: a bar's height is its value on the drawn axis, labels are
escaped, and the chart names itself for screen readers."""

from __future__ import annotations

import re

from services.console import charts


def test_a_bar_reaches_its_value_on_the_axis_and_the_chart_has_its_title() -> None:
    svg = str(charts.bars_and_line("观测<对比>", ["第1月", "第2月"], [0, 7], [0.5, 0.4], "实际", "预期"))
    assert 'role="img"' in svg and 'aria-label="观测&lt;对比&gt;"' in svg and "<title>观测&lt;对比&gt;</title>" in svg
    plot_h = charts.HEIGHT - charts.TOP - charts.BOTTOM
    [bar] = [b for b in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="#a4161a">',
                                   svg) if float(b[1]) > 0]
    assert float(bar[1]) == round(plot_h * 7 / 10, 1)  # the axis runs to 10
    assert float(bar[0]) + float(bar[1]) == charts.TOP + plot_h  # standing on the axis


def test_weekly_lines_leave_gaps_and_draw_the_target() -> None:
    svg = str(charts.lines("准确率", ["2026-W45", "2026-W46", "2026-W47"],
                           [("DLR-1", [0.99, None, 0.97])], target=0.98, target_name="目标", percent=True))
    assert svg.count("<circle") == 2 and 'stroke-dasharray="6 4"' in svg and "目标" in svg and "100%" in svg
