"""Step 5, Analysis: a run's AP50 per class in bands (what the model finds well, what it misses) and its hardest
validation images, from the analysis report the training job logged to MLflow."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from visionops import analysis
from visionops_console import charts
from visionops_console.core import Console
from visionops_console.steps.evaluation import selected_run


def page_analysis(console: Console, request: Request) -> Response:
    runs, error = console.guard(lambda: console.mlflow.training_runs(), [])
    selected = selected_run(console, request, runs)
    context: dict[str, Any] = {"runs": runs, "error": error, "run": selected, "rows": [], "hardest": [],
                               "report": None, "chart": None}
    if selected is not None:
        report = console.mlflow.analysis_report(selected)
        per_class = {r["class"]: r["ap50"] for r in (report or {}).get("per_class", [])} or \
            console.mlflow.per_class_ap50(selected)
        rows = analysis.class_rows(per_class)
        context.update(rows=rows, bands=analysis.band_counts(rows), report=report,
                       hardest=hardest_images(console, report), chart=charts.ap50_bands(rows) if rows else None,
                       totals=(report or {}).get("analysis") or {})
    return console.render(request, "analysis.html", "analysis", band_colours=analysis.BAND_COLOURS, **context)


def hardest_images(console: Console, report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The report's hardest images, each with its product and the classes its labels hold (when the dataset volume
    has it)."""
    hardest = []
    for item in ((report or {}).get("analysis") or {}).get("hardest") or []:
        image = str(item.get("image", ""))
        classes = console.volume.find_image_classes(image) if console.volume.configured else None
        hardest.append({**item, "classes": classes, "product": image.split("_", 1)[0].lower()})
    return hardest
