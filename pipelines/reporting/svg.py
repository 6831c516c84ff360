"""Charts as inline SVG: no script, no font or file from elsewhere, crisp on screen and on paper.

Small on purpose: a report has a handful of line and bar charts, and a national run writes thousands of them,
so they are strings built here (milliseconds each) rather than a plotting library's figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# colour-blind safe (Okabe-Ito); the programme is always the first colour, the nation the second
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
WIDTH, HEIGHT = 680, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 64


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    dashed: bool = False


@dataclass
class Threshold:
    """A horizontal reference line with its label (a benchmark)."""

    value: float
    label: str


@dataclass
class Chart:
    title: str
    categories: Sequence[str]
    series: list[Series]
    tick: Callable[[float], str]  # how an axis value prints (Dutch)
    thresholds: list[Threshold] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)  # category positions to mark (a quarter after a gap)
    value_labels: bool = False  # bar charts: print each value above its bar
    mark_note: str = ""


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks if span > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _scale(chart: Chart, floor_zero: bool = True) -> tuple[float, float, float]:
    values = [v for s in chart.series for v in s.values if v is not None and math.isfinite(v)]
    values += [t.value for t in chart.thresholds]
    low = min([0.0, *values]) if floor_zero else min(values, default=0.0)
    high = max(values, default=1.0)
    if high <= low:
        high = low + 1.0
    step = _nice_step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _frame(chart: Chart, low: float, high: float, step: float) -> tuple[list[str], Callable[[float], float]]:
    plot_h = HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    parts = []
    tick = low
    while tick <= high + step / 2:
        yy = y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(chart.tick(tick))}</text>')
        tick += step
    return parts, y


def _x_labels(chart: Chart, x: Callable[[int], float]) -> list[str]:
    parts = []
    for i, label in enumerate(chart.categories):
        mark = " *" if i in chart.marked else ""
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="cat">'
            f"{escape(label)}{mark}</text>"
        )
    return parts


def _legend(chart: Chart, kind: str) -> tuple[list[str], float]:
    """Below the axis, wrapping to a next line where the chart is full; returns the parts and the baseline of its
    last line (the SVG grows with it)."""
    parts, x = [], LEFT
    y = HEIGHT - 18
    for i, s in enumerate(chart.series):
        colour = COLOURS[i % len(COLOURS)]
        if x > LEFT and x + 30 + 7 * len(s.name) > WIDTH - RIGHT:
            x, y = LEFT, y + 18
        if kind == "bar":
            parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            parts.append(
                f'<line x1="{x}" x2="{x + 14}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2.5"{dash}/>'
            )
        parts.append(f'<text x="{x + 18}" y="{y}">{escape(s.name)}</text>')
        x += 30 + 7 * len(s.name)
    if chart.marked and chart.mark_note:
        if x + 7 * len(chart.mark_note) > WIDTH - RIGHT:
            x, y = LEFT, y + 18
        parts.append(f'<text x="{x}" y="{y}" class="note">* {escape(chart.mark_note)}</text>')
    return parts, y


def _thresholds(chart: Chart, y: Callable[[float], float]) -> list[str]:
    parts = []
    for i, t in enumerate(sorted(chart.thresholds, key=lambda t: t.value)):
        yy = y(t.value)
        # labels alternate right and left, so two close lines (40% and 41%) stay readable
        x, anchor = (WIDTH - RIGHT - 2, "end") if i % 2 == 0 else (LEFT + 4, "start")
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" class="threshold"/>')
        parts.append(
            f'<text x="{x}" y="{yy - 3:.1f}" text-anchor="{anchor}" class="threshold-label">{escape(t.label)}</text>'
        )
    return parts


def _svg(title: str, body: list[str], height: float, width: float = WIDTH) -> str:
    title = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{title}" '
        f'class="chart"><title>{title}</title>' + "".join(body) + "</svg>"
    )


def _with_legend(chart: Chart, parts: list[str], kind: str) -> str:
    legend, bottom = _legend(chart, kind)
    return _svg(chart.title, parts + legend, max(HEIGHT, bottom + 8))


def line_chart(chart: Chart) -> str:
    """One line per series over the categories; a missing value breaks the line."""
    low, high, step = _scale(chart)
    parts, y = _frame(chart, low, high, step)
    n = max(len(chart.categories), 1)
    plot_w = WIDTH - LEFT - RIGHT

    def x(i: int) -> float:
        return LEFT + plot_w * (i + 0.5) / n

    parts += _thresholds(chart, y)
    for i, s in enumerate(chart.series):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        runs, run = [], []
        for j, v in enumerate(s.values):
            if v is None or not math.isfinite(v):  # a missing value breaks this series' line, no other
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((x(j), y(v)))
        if run:
            runs.append(run)
        for r in runs:
            points = " ".join(f"{px:.1f},{py:.1f}" for px, py in r)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"{dash}/>')
        for j, v in enumerate(s.values):
            if v is not None and math.isfinite(v):
                parts.append(
                    f'<circle cx="{x(j):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                    f"<title>{escape(s.name)}, {escape(chart.categories[j])}: {escape(chart.tick(v))}</title>"
                    "</circle>"
                )
    parts += _x_labels(chart, x)
    return _with_legend(chart, parts, "line")


def bar_chart(chart: Chart) -> str:
    """Grouped vertical bars, one group per category."""
    low, high, step = _scale(chart)
    parts, y = _frame(chart, low, high, step)
    n = max(len(chart.categories), 1)
    k = max(len(chart.series), 1)
    plot_w = WIDTH - LEFT - RIGHT
    group = plot_w / n
    bar = group * 0.8 / k

    def x(i: int) -> float:
        return LEFT + group * (i + 0.5)

    parts += _thresholds(chart, y)
    for i, s in enumerate(chart.series):
        colour = COLOURS[i % len(COLOURS)]
        for j, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                continue
            left = LEFT + group * j + group * 0.1 + bar * i
            top, base = sorted((y(v), y(0.0)))
            parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{max(base - top, 0.5):.1f}" '
                f'fill="{colour}"><title>{escape(s.name)}, {escape(chart.categories[j])}: '
                f"{escape(chart.tick(v))}</title></rect>"
            )
            if chart.value_labels:
                parts.append(
                    f'<text x="{left + bar / 2:.1f}" y="{top - 3:.1f}" text-anchor="middle" class="value">'
                    f"{escape(chart.tick(v))}</text>"
                )
    parts += _x_labels(chart, x)
    return _with_legend(chart, parts, "bar")


def share_bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    texts: Sequence[str],
    colours: Sequence[str] | None = None,
) -> str:
    """Horizontal bars of shares (0..1), each labelled with its text: reads better than a pie."""
    row, left, right = 30, 260, 90
    height = TOP + row * len(labels) + 8
    width = WIDTH
    span = width - left - right
    top_value = max([v for v in values if v is not None] + [1e-9])
    parts = []
    for i, (label, v, text) in enumerate(zip(labels, values, texts, strict=True)):
        yy = TOP + row * i
        colour = (colours or COLOURS)[i % len(colours or COLOURS)]
        parts.append(f'<text x="{left - 8}" y="{yy + 17}" text-anchor="end">{escape(label)}</text>')
        if v is not None:
            w = span * v / top_value
            parts.append(f'<rect x="{left}" y="{yy + 4}" width="{max(w, 0.5):.1f}" height="18" fill="{colour}"/>')
            parts.append(f'<text x="{left + w + 6:.1f}" y="{yy + 17}">{escape(text)}</text>')
    return _svg(title, parts, height, width)


@dataclass
class FunnelPoint:
    """One programme in a funnel plot: its denominator and rate; ``label`` None leaves the dot unnamed."""

    denominator: float
    rate: float
    label: str | None = None
    highlight: bool = False


Z95, Z998 = 1.959964, 3.090232  # as marts.ips_funnel


def funnel_limit(national: float, denominator: float, z: float) -> float:
    """national +/- z * sqrt(national * (1 - national) / denominator), clipped to [0, 1] (z negative: lower)."""
    return max(0.0, min(1.0, national + z * math.sqrt(national * (1 - national) / denominator)))


def funnel_plot(title: str, points: Sequence[FunnelPoint], national: float, tick: Callable[[float], str]) -> str:
    """A funnel plot: every programme's rate against its denominator, the national rate as a line and the 95% and
    99.8% control limits as curves that narrow as the denominator grows."""
    height = HEIGHT + 40
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    top_x = max([p.denominator for p in points] + [10.0]) * 1.08
    low_x = max(1.0, min([p.denominator for p in points] + [top_x]) * 0.5)
    xs = [low_x + (top_x - low_x) * i / 80 for i in range(81)]
    curves = {(z, sign): [funnel_limit(national, x, sign * z) for x in xs] for z in (Z95, Z998) for sign in (-1, 1)}
    values = [p.rate for p in points] + [national] + [v for c in curves.values() for v in c]
    step = _nice_step(max(values) - 0.0)
    high = min(1.0, math.ceil(max(values) / step) * step) or step

    def x(v: float) -> float:
        return LEFT + plot_w * (v - 0.0) / top_x

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / high)

    parts = []
    t = 0.0
    while t <= high + step / 2:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{escape(tick(t))}</text>')
        t += step
    x_step = _nice_step(top_x)
    t = 0.0
    while t <= top_x:
        parts.append(f'<text x="{x(t):.1f}" y="{TOP + plot_h + 16:.1f}" text-anchor="middle" class="cat">'
                     f"{escape(f'{t:,.0f}'.replace(',', '.'))}</text>")  # fmt: skip
        t += x_step
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 32:.1f}" text-anchor="middle" class="cat">'
                 "Aantal cliënten (caseload)</text>")  # fmt: skip
    for (z, _sign), curve in curves.items():
        kind = "limit-95" if z == Z95 else "limit-998"
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, curve, strict=True))
        dash = ' stroke-dasharray="5 3"' if z == Z95 else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[1]}" stroke-width="1.5"{dash} '
                     f'class="{kind}"/>')  # fmt: skip
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(national):.1f}" y2="{y(national):.1f}" '
                 f'stroke="{COLOURS[7]}" stroke-width="1.5" class="national"/>')  # fmt: skip
    for p in sorted(points, key=lambda p: p.highlight):  # the programme's own dot on top
        colour, r = (COLOURS[5], 6) if p.highlight else (COLOURS[0], 4)
        name = f"{escape(p.label)}: " if p.label else ""
        parts.append(f'<circle cx="{x(p.denominator):.1f}" cy="{y(p.rate):.1f}" r="{r}" fill="{colour}" '
                     f'class="dot{" own" if p.highlight else ""}"><title>{name}{escape(tick(p.rate))}, '
                     f"{p.denominator:,.0f}".replace(",", ".") + " cliënten</title></circle>")  # fmt: skip
        if p.label:
            parts.append(f'<text x="{x(p.denominator) + 7:.1f}" y="{y(p.rate) + 3:.1f}" class="dot-label">'
                         f"{escape(p.label)}</text>")  # fmt: skip
    legend_y = height - 8
    legend = []
    for i, (label, colour, dash) in enumerate((
        (f"Landelijk ({tick(national)})", COLOURS[7], ""),
        ("95%-grenzen", COLOURS[1], ' stroke-dasharray="5 3"'),
        ("99,8%-grenzen", COLOURS[1], ""),
    )):  # fmt: skip
        left = LEFT + 150 * i
        legend.append(f'<line x1="{left}" x2="{left + 14}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="{colour}" '
                      f'stroke-width="1.5"{dash}/>')  # fmt: skip
        legend.append(f'<text x="{left + 18}" y="{legend_y}">{escape(label)}</text>')
    return _svg(title, parts + legend, height)
