"""Charts drawn on the server as SVG: no script, so they pass the console's CSP and read the
same in every browser; labels come translated from the page (zh-CN or English) and every chart
has a text title and a table beside it for screen readers."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40
COLOURS = ("#0b4f8a", "#a4161a", "#2a7a2a", "#8a5a00", "#5b3c88", "#00707a", "#7a0050", "#444c55")


def _scale(top: float) -> float:
    """A round upper bound for the axis."""
    if top <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if top <= step:
            return float(step)
    return float(top)


def _frame(title: str, y_max: float, labels: Sequence[str], y_format: str = "{:g}") -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#c9d1d9"/>']
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e9ee"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#1b1f24">'
                     f'{escape(y_format.format(value))}</text>')
    step = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        if i % step:
            continue
        x = LEFT + plot_w * (i + 0.5) / max(len(labels), 1)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                     f'fill="#1b1f24">{escape(label)}</text>')
    return parts


def _legend(items: Sequence[tuple[str, str]]) -> str:
    out, x = [], LEFT
    for colour, name in items:
        out.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#1b1f24">{escape(name)}</text>')
        x += 24 + 12 * len(name)
    return "".join(out)


def bars_and_line(title: str, labels: Sequence[str], bars: Sequence[float], line: Sequence[float], bar_name: str,
                  line_name: str) -> Markup:
    """Observed as bars, expected as a line (the inspectors' evidence per month in service)."""
    y_max = _scale(max([*bars, *line, 0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, y_max, labels)
    n = max(len(labels), 1)
    for i, value in enumerate(bars):
        h = plot_h * value / y_max
        x = LEFT + plot_w * i / n + plot_w / n * 0.15
        parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{plot_w / n * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="{COLOURS[1]}"><title>{escape(labels[i])}: {value:g}</title></rect>')
    points = " ".join(f"{LEFT + plot_w * (i + 0.5) / n:.1f},{TOP + plot_h - plot_h * v / y_max:.1f}"
                      for i, v in enumerate(line))
    if points:
        parts.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>')
    parts.append(_legend([(COLOURS[1], bar_name), (COLOURS[0], line_name)]))
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
          target: float | None = None, target_name: str = "", percent: bool = False) -> Markup:
    """One line per series over the labels (weeks), gaps where a value is missing; a dashed
    target line."""
    values = [v for _, vs in series for v in vs if v is not None]
    lo = 0.0
    y_max = 1.0 if percent else _scale(max([*values, target or 0, 0]))
    if percent and values:
        lo = max(0.0, min([*values, target or 1.0]) - 0.05)
        lo = int(lo * 20) / 20
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    fmt = "{:.0%}" if percent else "{:g}"
    parts = _frame(title, y_max, labels, fmt)
    if percent:  # relabel the axis from lo to 100 %
        parts = [p for p in parts if "text-anchor=\"end\"" not in p]
        for i in range(5):
            value = lo + (y_max - lo) * i / 4
            y = TOP + plot_h - plot_h * i / 4
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#1b1f24">'
                         f'{escape(fmt.format(value))}</text>')
    n = max(len(labels), 1)

    def y_of(v: float) -> float:
        return TOP + plot_h - plot_h * (v - lo) / max(y_max - lo, 1e-9)

    if target is not None:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_of(target):.1f}" y2="{y_of(target):.1f}" '
                     f'stroke="#a4161a" stroke-dasharray="6 4"/>')
    legend = []
    for k, (name, vs) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        legend.append((colour, name))
        pts = [(LEFT + plot_w * (i + 0.5) / n, y_of(v)) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            parts.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" fill="none" '
                         f'stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
    if target is not None:
        legend.append(("#a4161a", target_name))
    parts.append(_legend(legend[:8]))
    parts.append("</svg>")
    return Markup("".join(parts))
