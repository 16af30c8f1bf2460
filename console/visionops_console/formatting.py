"""How the pages print numbers, times and durations (the Jinja filters ``pct``, ``num``, ``time``, ``ago``,
``duration``); a missing or non-finite value prints as :data:`DASH`."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from visionops_console import kube

DASH = "\u2013"  # what a missing value shows


def fmt_pct(value: Any, digits: int = 1) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(number) else f"{number * 100:.{digits}f} %"


def fmt_num(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(number) else f"{number:.{digits}f}"


def _as_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, datetime):
        return value
    return kube.parse_time(str(value))


def fmt_time(value: Any) -> str:
    when = _as_datetime(value)
    return DASH if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return DASH
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def fmt_ago(value: Any, now: datetime | None = None) -> str:
    when = _as_datetime(value)
    if when is None:
        return DASH
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


FILTERS = {"pct": fmt_pct, "num": fmt_num, "time": fmt_time, "ago": fmt_ago, "duration": fmt_duration}
