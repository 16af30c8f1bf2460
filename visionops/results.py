"""The contract between a Job and the operator: a small JSON result file and the exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096


def write_result(path: str | Path | None, result: dict[str, Any]) -> str:
    """Write ``result`` as compact JSON to ``path`` (if given) and return the text.

    The text is shrunk to fit a Kubernetes termination message: bulky keys are dropped first.
    """
    text = json.dumps(result, separators=(",", ":"), sort_keys=True, default=str)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        slim = {k: v for k, v in result.items() if k not in {"per_class_ap50", "feature_scores", "history"}}
        slim["truncated"] = True
        text = json.dumps(slim, separators=(",", ":"), sort_keys=True, default=str)
    if path:
        Path(path).write_text(text)
    return text


def read_result(text: str | None) -> dict[str, Any] | None:
    """Parse a result written by :func:`write_result`; ``None`` when absent or not JSON."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
