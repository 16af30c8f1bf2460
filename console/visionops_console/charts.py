"""Geometry of the server-drawn charts (horizontal bars as inline SVG): pure functions, no drawing library.

Line charts that grow while a pod trains are drawn in the browser (static/console.js) from the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from visionops.analysis import BAND_COLOURS, FAIR_AP50, GOOD_AP50

ROW_H = 24
LABEL_W = 170
BAR_W = 300
VALUE_W = 56
TOP = 8


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    colour: str
    x: float
    y: float
    width: float
    key: str  # what a click filters on (a class name)


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int
    height: int
    bar_x: int
    bar_w: int
    guides: list[tuple[float, str]]  # (x, label) of vertical guide lines
    scale_max: float


def nice_max(value: float) -> float:
    """A round axis end at or above ``value`` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10 ** exponent >= value:
            return step * 10 ** exponent
    return 10 ** (exponent + 1)


def bar_chart(rows: Sequence[tuple[str, float, str]], *, scale_max: float | None = None, percent: bool = False,
              guides: Sequence[float] = ()) -> BarChart:
    """Horizontal bars for ``(label, value, colour)`` rows in the given order; ``percent`` shows 0-1 values in %."""
    top = scale_max if scale_max is not None else nice_max(max((v for _, v, _ in rows), default=0.0))
    bars = []
    for i, (label, value, colour) in enumerate(rows):
        width = 0.0 if top <= 0 else max(0.0, min(1.0, value / top)) * BAR_W
        text = f"{value * 100:.1f} %" if percent else f"{value:g}"
        bars.append(Bar(label=label, value=value, text=text, colour=colour, x=LABEL_W, y=TOP + i * ROW_H,
                        width=round(max(width, 1.5 if value > 0 else 0.0), 2), key=label))
    guide_lines = [(LABEL_W + BAR_W * (g / top), f"{g * 100:.0f} %" if percent else f"{g:g}") for g in guides
                   if 0 < g <= top]
    return BarChart(bars=bars, width=LABEL_W + BAR_W + VALUE_W, height=TOP * 2 + ROW_H * max(len(rows), 1) + 14,
                    bar_x=LABEL_W, bar_w=BAR_W, guides=guide_lines, scale_max=top)


def class_distribution(classes: Sequence[dict], colours: dict[str, str]) -> BarChart:
    """Instances per class (train + val), most frequent first: the data card's chart."""
    rows = sorted(((c["name"], float(c["instances"]["total"]), colours.get(c["name"], "#4a7bd0")) for c in classes),
                  key=lambda r: (-r[1], r[0]))
    top = nice_max(max((r[1] for r in rows), default=0.0))
    return bar_chart(rows, scale_max=top, guides=[top / 2, top])


def ap50_bands(rows: Sequence[dict]) -> BarChart:
    """AP50 per class, worst first, each bar in its band's colour, guides at the band limits."""
    data = [(str(r["class"]), float(r["ap50"]), BAND_COLOURS[str(r["band"])]) for r in rows]
    return bar_chart(data, scale_max=1.0, percent=True, guides=[FAIR_AP50, GOOD_AP50, 1.0])


# -- time series (the Production page: what Prometheus recorded, the rollouts marked) ---------------------------

PALETTE = ("#2563eb", "#e8590c", "#2e9d44", "#9c36b5", "#0891b2", "#d6336c", "#5c7cfa", "#a16207")
TIME_W, TIME_H, TIME_L, TIME_R, TIME_T, TIME_B = 720, 230, 54, 16, 14, 30
MARKER_LABEL_GAP, MARKER_LABEL_ROWS, MARKER_ROW_HEIGHT = 24, 3, 11  # rollout labels: px apart, rows, px per row


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    path: str  # the SVG path ("M x,y L x,y ...")
    last: str  # the newest value, as text
    dot: tuple[float, float]  # where the newest value is drawn (a line of one point is a dot)


@dataclass(frozen=True)
class TimeChart:
    lines: list[Line]
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_ticks: list[tuple[float, str]]  # (x, label)
    markers: list[tuple[float, str, int]]  # (x, label, label row): the rollouts
    width: int = TIME_W
    height: int = TIME_H
    left: int = TIME_L
    right: int = TIME_W - TIME_R
    top: int = TIME_T
    bottom: int = TIME_H - TIME_B
    marker_row_height: int = MARKER_ROW_HEIGHT


def amount(value: float) -> str:
    """A value as a person reads it: 1,234 / 12.3 / 0.0123."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def time_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], start: float, end: float, *,
               markers: Sequence[tuple[float, str]] = (), unit: str = "", clock: str = "%H:%M") -> TimeChart:
    """Lines of ``(label, [(unix time, value)])`` over ``[start, end]``, y from 0 to a round top, the
    ``markers`` (unix time, label) inside the window as vertical lines; the busiest line first."""
    span = max(end - start, 1.0)
    peak = max((v for _, points in series for _, v in points if math.isfinite(v)), default=0.0)
    top = nice_max(peak)

    def x(t: float) -> float:
        return round(TIME_L + (t - start) / span * (TIME_W - TIME_L - TIME_R), 1)

    def y(v: float) -> float:
        return round(TIME_T + (1 - min(max(v, 0.0), top) / top) * (TIME_H - TIME_T - TIME_B), 1)

    ordered = sorted(series, key=lambda s: -sum(v for _, v in s[1] if math.isfinite(v)))
    lines = []
    for i, (label, points) in enumerate(ordered):
        kept = [(t, v) for t, v in points if math.isfinite(v) and start <= t <= end]
        if not kept:
            continue
        path = " ".join(f"{'L' if j else 'M'}{x(t)},{y(v)}" for j, (t, v) in enumerate(kept))
        lines.append(Line(label, PALETTE[i % len(PALETTE)], path, amount(kept[-1][1]) + unit,
                          (x(kept[-1][0]), y(kept[-1][1]))))
    y_ticks = [(y(top * k / 4), amount(top * k / 4) + unit) for k in range(5)]
    x_ticks = [(x(start + span * k / 6), time.strftime(clock, time.gmtime(start + span * k / 6))) for k in range(7)]
    shown = sorted((x(t), label) for t, label in markers if start <= t <= end)
    rows = label_rows([at for at, _ in shown])
    return TimeChart(lines=lines, y_ticks=y_ticks, x_ticks=x_ticks,
                     markers=[(at, label, row) for (at, label), row in zip(shown, rows, strict=True)])


def label_rows(xs: Sequence[float], gap: float = MARKER_LABEL_GAP, rows: int = MARKER_LABEL_ROWS) -> list[int]:
    """The row of each marker's label (``xs`` ascending): the first row whose last label is ``gap`` away, so that
    rollouts close in time stay readable; when every row is taken, the one whose last label is furthest left."""
    last = [-math.inf] * rows
    chosen = []
    for at in xs:
        row = next((r for r in range(rows) if at - last[r] >= gap), min(range(rows), key=last.__getitem__))
        last[row] = at
        chosen.append(row)
    return chosen
