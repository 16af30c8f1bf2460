"""What production is finding, from Prometheus (``--prometheus-url``): the predictor's metrics over a time window
and the active alerts, through Prometheus' HTTP API (``/api/v1/query_range``, ``/api/v1/alerts``). Every call
has a timeout; an unreachable or failing Prometheus is :class:`PrometheusUnavailable` with a sentence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import requests

# The predictor's metrics (predictor/metrics.py) as the page shows them; {rate} is the rate window.
QUERIES = {
    "detections": "sum by (class_name) (rate(visionops_detections_total[{rate}])) * 3600",
    "images": "sum(rate(visionops_images_predicted_total[{rate}])) * 3600",
    "latency": "histogram_quantile(0.95, sum by (le) (rate(visionops_inference_seconds_bucket[{rate}]))) * 1000",
    "errors": "sum by (reason) (rate(visionops_prediction_errors_total[{rate}])) * 3600",
}
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 86400}
POINTS = 120  # per series over the window


class PrometheusUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


def rate_window(step: float) -> str:
    """The range of rate(): at least a minute, and wide enough to hold two scrapes per step."""
    return f"{max(60, math.ceil(step * 2))}s"


class Prometheus:
    """One Prometheus server (or nothing, when no URL is configured)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def _get(self, path: str, **params: Any) -> Any:
        try:
            answer = self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} does not answer ({type(exc).__name__})") from None
        try:
            body = answer.json()
        except ValueError:
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered {answer.status_code}, not JSON") from None
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus refused the query: {body.get('error') or answer.status_code}")
        return body["data"]

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("/api/v1/query_range", query=query, start=f"{start:.3f}", end=f"{end:.3f}",
                         step=f"{step:.3f}")
        return [Series(dict(r.get("metric") or {}), [(float(t), float(v)) for t, v in r.get("values") or []])
                for r in data.get("result") or []]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (firing first), each ``{name, state, severity, summary, since, labels}``."""
        rows = []
        for alert in self._get("/api/v1/alerts").get("alerts") or []:
            labels, notes = alert.get("labels") or {}, alert.get("annotations") or {}
            rows.append({"name": labels.get("alertname", ""), "state": alert.get("state", ""),
                         "severity": labels.get("severity", ""), "summary": notes.get("summary") or
                         notes.get("description") or "", "since": alert.get("activeAt", ""),
                         "labels": {k: v for k, v in labels.items() if k not in ("alertname", "severity")}})
        return sorted(rows, key=lambda a: (a["state"] != "firing", a["name"]))

    def close(self) -> None:
        self.session.close()
