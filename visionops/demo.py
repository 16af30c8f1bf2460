"""``visionops demo``: the whole loop on one machine, with the same components the cluster runs.

synthetic VISION data -> local MLflow server -> training job -> registry + promotion gate ->
KServe predictor over HTTP -> drift batch -> drift job. Each step prints what it did; the end
prints a summary. Finishes in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from visionops import config
from visionops.contract import ContractError, DriftResult, TrainingResult
from visionops.local_mlflow import free_port, start_mlflow_server
from visionops.progress import Steps

DEMO_MAP50_THRESHOLD = 0.5  # the demo's gate: its model finds the synthetic defects (val map50 about 0.8)
STEP_NAMES = ("generate", "mlflow", "prepare + train", "register", "serve + predict", "drift", "summary")
STEPS = len(STEP_NAMES)


def step(n: int, text: str, steps: Steps) -> None:
    """Step ``n``'s header on stdout; on a terminal also the step line on stderr (step k/N, elapsed)."""
    print(f"\n[{n}/{STEPS}] {text}", flush=True)
    steps.start(n, STEP_NAMES[n - 1])


def run_component(module: str, args: list[str], result_file: Path, env: dict[str, str],
                  document: type[TrainingResult] | type[DriftResult]) -> dict[str, Any]:
    """Run a Job entrypoint as the cluster does (a process, a typed result document in a file); fail loudly."""
    proc = subprocess.run([sys.executable, "-m", module, *args, "--result-file", str(result_file)], env=env)
    try:
        result = document.parse(result_file.read_text()).to_dict()
    except (OSError, ContractError) as error:
        result = {"error": f"no readable result ({error})"}
    if proc.returncode != 0 or "error" in result:
        raise SystemExit(f"demo: {module} failed: {result.get('error', f'exit code {proc.returncode}')}")
    return result


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the predictor exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.5)
    raise SystemExit(f"demo: the predictor was not ready at {url} after {timeout:.0f} s")


def predict(base: str, model: str, image: Path) -> dict[str, Any]:
    payload = {"instances": [{"image": {"b64": base64.b64encode(image.read_bytes()).decode()}}]}
    request = urllib.request.Request(f"{base}/v1/models/{model}:predict", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def labelled_samples(vision: Path) -> list[Any]:
    """The val images that carry labelled defects, product by product in turn (sorted within each): the demo's
    samples, in the order it tries them."""
    from visionops.analysis import load_ground_truth

    per_product: dict[str, list[Any]] = {}
    for truth in load_ground_truth(vision):
        if truth.boxes:
            per_product.setdefault(truth.name.split("/", 1)[0], []).append(truth)
    return [truth for group in zip(*per_product.values(), strict=False) for truth in group]


def check_sample(found: dict[str, Any], truth: Any) -> tuple[bool, str]:
    """Whether the predictor's answer on ``truth``'s image finds every labelled defect with the right class
    (IoU >= 0.5) and nothing else, and a line saying so."""
    from visionops.analysis import IOU_THRESHOLD, Box, match_boxes

    predicted = [Box(d["class_name"], tuple(d["bbox"]), d["confidence"]) for d in found["detections"]]
    outcome = match_boxes(truth.boxes, predicted)
    labelled = ", ".join(sorted(box.class_name for box in truth.boxes))
    line = (f"{outcome.matched} of {len(truth.boxes)} labelled defects found ({labelled}; right class, IoU >= "
            f"{IOU_THRESHOLD}), {outcome.false_positives} false detections")
    return outcome.error == 0, line


def predict_samples(base: str, model: str, samples: list[Any], tries: int = 3) -> tuple[Any, dict[str, Any], bool, str]:
    """Predict the labelled val samples in turn until one is answered correctly (at most ``tries``); return the
    sample, the answer, whether it was correct and the line that says how it compares with the labels."""
    if not samples:
        raise SystemExit("demo: the synthetic dataset has no labelled val image")
    for truth in samples[:tries]:
        found = predict(base, model, truth.path)["predictions"][0]
        correct, line = check_sample(found, truth)
        if correct:
            break
    return truth, found, correct, line


def serving_line(serving: dict[str, Any]) -> str:
    """``INT8 (why)`` of the training result's INT8 gate (training_job.quantize)."""
    return f"{str(serving.get('precision', '-')).upper()} ({serving.get('reason', 'no INT8 gate in the result')})"


def draw_detections(image: Path, detections: list[dict[str, Any]], out: Path) -> Path:
    """Write ``out``: ``image`` with the predictor's boxes, class names and confidences drawn."""
    from PIL import Image

    from visionops.data.samples import DrawBox, class_colours, draw_boxes

    names = sorted({d["class_name"] for d in detections})
    colours = dict(zip(names, class_colours(max(len(names), 1)), strict=False))
    with Image.open(image) as raw:
        picture = raw.convert("RGB")
    scale = max(1, 480 // max(picture.size))  # small images are enlarged so that the labels stay readable
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    draw_boxes(picture, [DrawBox(tuple(v * scale for v in d["bbox"]), f"{d['class_name']} {d['confidence']:.2f}",
                                 colours[d["class_name"]]) for d in detections])
    picture.save(out, format="PNG")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    training = config.load("training")
    parser = argparse.ArgumentParser(prog="visionops demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".visionops/demo"),
                        help="where data, MLflow state and runs go (default %(default)s)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="use this MLflow server instead of starting one (env MLFLOW_TRACKING_URI)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default %(default)s)")
    parser.add_argument("--imgsz", type=int, default=128, help="training image size (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=DEMO_MAP50_THRESHOLD,
                        help="promotion gate map50 threshold (default %(default)s; a cluster's TrainingRuns take "
                             "theirs from spec.promotion, default configs/model.yaml)")
    parser.add_argument("--model-name", default=training["registered_model_name"],
                        help="registered model name (default %(default)s)")
    parser.add_argument("--keep-serving", action="store_true",
                        help="leave MLflow and the predictor running, and start the console on them")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # with visionops.telemetry's opt-outs
    steps = Steps(STEPS, "demo")
    try:
        step(1, "generating a synthetic VISION dataset", steps)
        from visionops.data.synth import generate

        vision = generate(work / "data" / "vision", seed=0)
        print(f"  {vision}")

        step(2, "MLflow tracking server", steps)
        uri = args.tracking_uri
        if not uri:
            proc, uri = start_mlflow_server(work / "mlflow", port=free_port())
            processes.append(proc)
        env["MLFLOW_TRACKING_URI"] = uri
        print(f"  {uri}")

        step(3, f"training YOLOv8n from scratch ({args.epochs} epochs, {args.imgsz} px, CPU)", steps)
        trained = run_component("training_job", [
            "--dataset", str(vision), "--workdir", str(work / "train"), "--epochs", str(args.epochs),
            "--imgsz", str(args.imgsz), "--tracking-uri", uri, "--name", "demo",
        ], work / "train-result.json", env, TrainingResult)
        metrics = trained.get("metrics", {})
        print(f"  run {trained['run_id']}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))

        step(4, "registering the model and applying the promotion gate", steps)
        from mlflow.tracking import MlflowClient

        from visionops import registry

        client = MlflowClient(tracking_uri=uri)
        version = registry.register_version(client, args.model_name, trained["run_id"])
        decision = registry.evaluate_and_promote(client, args.model_name, version.version, threshold=args.threshold)
        alias = "production" if decision.promote else "staging"
        print(f"  version {version.version}: {'PROMOTED' if decision.promote else 'not promoted'} ({decision.reason})")
        if not decision.promote:
            print("  serving the staging version instead (raise --epochs to pass the gate)")

        step(5, f"serving models:/{args.model_name}@{alias} with the KServe ModelServer", steps)
        port = free_port()
        predictor_log = (work / "predictor.log").open("wb")
        print(f"  logs: {work / 'predictor.log'}")
        serve = subprocess.Popen([
            sys.executable, "-m", "predictor", "--model-uri", f"models:/{args.model_name}@{alias}",
            "--tracking-uri", uri, "--http_port", str(port), "--model_name", args.model_name,
            "--download-dir", str(work / "serving"),
        ], env=env, stdout=predictor_log, stderr=subprocess.STDOUT)
        processes.append(serve)
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/v2/models/{args.model_name}/ready", serve)
        truth, found, correct, verdict = predict_samples(base, args.model_name, labelled_samples(vision))
        image = truth.path
        print(f"  POST {base}/v1/models/{args.model_name}:predict ({image.relative_to(vision)}) -> "
              f"{found['num_detections']} detections")
        for det in found["detections"][:5]:
            print(f"    {det['class_name']:<28} {det['confidence']:.2f} {[round(v) for v in det['bbox']]}")
        print(f"  {'correct' if correct else 'WRONG'}: {verdict}"
              + ("" if correct else " (train longer: --epochs)"))
        drawn = draw_detections(image, found["detections"], work / "prediction.png")
        print(f"  drawn: {drawn}")

        step(6, "simulating a drifted batch (brightness) and running the drift check", steps)
        from visionops.data.drift_batch import simulate

        sim = config.load("drift")["simulation"]
        batch = work / "batches" / "brightness"
        simulate(vision, batch, kind=sim["kind"], severity=sim["severity"], fraction=1.0, seed=0)
        drift = run_component("drift_job", [
            "--reference", str(vision), "--reference-split", "train", "--current", str(batch),
            "--tracking-uri", uri, "--name", "demo",
        ], work / "drift-result.json", env, DriftResult)

        step(7, "summary", steps)
        rows = [
            ("MLflow", uri),
            ("training run", trained["run_id"]),
            ("metrics", ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()))),
            ("model version", f"{args.model_name} v{version.version} ({alias})"),
            ("serving", serving_line(trained.get("serving") or {})),
            ("promotion", decision.reason),
            ("predictor", f"{base} (V1 /v1/models/{args.model_name}:predict, V2 /v2/models/{args.model_name}/infer)"),
            ("prediction", f"{found['num_detections']} detections on {image.relative_to(vision)}, "
                           f"{'correct' if correct else 'WRONG'} (drawn: {drawn})"),
            ("drift", f"{drift.get('status')} share={drift.get('drift_share', 0):.2f} "
                      f"features={', '.join(drift.get('drifted_features', [])) or '-'}"),
            ("drift report", drift.get("report_uri", "-")),
            ("took", f"{time.monotonic() - started:.0f} s"),
        ]
        for key, value in rows:
            print(f"  {key:<14} {value}")
        steps.finish()
        if args.keep_serving:
            console_port = free_port()
            console_log = (work / "console.log").open("wb")
            processes.append(subprocess.Popen([
                sys.executable, "-m", "visionops_console", "--port", str(console_port),
                "--datasets", str(vision.parent), "--mlflow-uri", uri, "--predictor-url", base,
                "--model-name", args.model_name,
            ], env=env, stdout=console_log, stderr=subprocess.STDOUT))
            print("\nMLflow, the predictor and the console keep running; Ctrl-C to stop.")
            print(f"  {'console':<14} http://127.0.0.1:{console_port}/ (logs: {work / 'console.log'}; "
                  "training and rollout need a cluster: $KUBECONFIG)")
            serve.wait()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in reversed(processes):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
