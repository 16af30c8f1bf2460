"""Step 4, Evaluation: the training runs MLflow holds, one run's loss and metric curves and its plots, and the
runs side by side; the plots are served from the run's artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from visionops_console import tracking
from visionops_console.core import Console
from visionops_console.tracking import LOSSES, SUMMARY

METRIC_LABELS = {"precision": "Precision", "recall": "Recall", "map50": "mAP50", "map50_95": "mAP50-95"}
COMPARED = 12  # finished runs side by side


def selected_run(console: Console, request: Request,
                 runs: list[tracking.RunSummary]) -> tracking.RunSummary | None:
    """The run ``?run=`` names (listed or not), else the newest finished one, else the newest."""
    wanted = request.query_params.get("run")
    if wanted:
        found = next((r for r in runs if r.run_id == wanted), None)
        return found or console.guard(lambda: console.mlflow.run(wanted))[0]
    return next((r for r in runs if r.status == "FINISHED"), runs[0] if runs else None)


def page_evaluation(console: Console, request: Request) -> Response:
    runs, error = console.guard(lambda: console.mlflow.training_runs(), [])
    selected = selected_run(console, request, runs)
    context: dict[str, Any] = {"runs": runs, "error": error, "run": selected}
    if selected is not None:
        histories, herr = console.guard(lambda: console.mlflow.histories(selected.run_id, (*LOSSES, *SUMMARY)), {})
        plots = tracking.order_plots(console.mlflow.list_artifacts(selected.run_id, tracking.PLOTS_DIR))
        main = [p for p in plots if p in tracking.PLOT_ORDER]
        context.update(
            series={"loss": tracking.history_series(histories, LOSSES),
                    "metrics": tracking.history_series(histories, SUMMARY)},
            plots=main, more_plots=[p for p in plots if p not in main], error=error or herr,
        )
    finished = [r for r in runs if r.status == "FINISHED" and "map50" in r.metrics]
    best = max(finished, key=lambda r: r.metrics["map50"], default=None)
    return console.render(request, "evaluation.html", "evaluation", compare=finished[:COMPARED],
                          best=best.run_id if best else "", labels=METRIC_LABELS, **context)


def mlflow_artifact(console: Console, request: Request) -> Response:
    """An image artifact of a run (plots, the hardest images), and nothing else of MLflow's store."""
    run_id, path = request.path_params["run_id"], request.path_params["path"]
    suffix = Path(path).suffix.lower()
    if path.split("/", 1)[0] not in tracking.SERVED_DIRS or suffix not in tracking.IMAGE_TYPES:
        raise HTTPException(404, "not an artifact the console serves")
    local, _ = console.guard(lambda: console.mlflow.artifact_file(run_id, path))
    if local is None:
        raise HTTPException(404, f"run {run_id} has no artifact {path}")
    return FileResponse(local, media_type=tracking.IMAGE_TYPES[suffix],
                        headers={"Cache-Control": "private, max-age=3600"})
