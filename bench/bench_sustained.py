"""Sustained load on the predictor: four clients for ten minutes, memory over time, against its first minute.

``python -m predictor`` (the real KServe ModelServer, a tiny YOLOv8n trained here unless --model-dir) answers
``--clients`` threads that send the synthetic dataset's images back to back for ``--minutes``. Every five seconds
the server's RSS is sampled. Printed: requests, errors (anything but 200), p50/p95/p99 latency, images/s, each
minute's median RSS against the first minute's (the baseline of the same run), and the slope of RSS over time after
the first minute (least squares, MiB per minute: memory flat means a slope near 0 and no trend across the minutes).
The operator's half of issue 25 item 5 (1,000 TrainingRuns) is ``bench/bench_operator.py --count 1000``.

    .venv/bin/python bench/bench_sustained.py [--minutes 10] [--clients 4] [--model-dir DIR]

Exit status 1 when a request failed or the slope is above 1 MiB/min.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_predictor import Server, in_workdir, load_images, tiny_vision_model  # noqa: E402
from fixtures.predictor_process import MB, ProcessMemory  # noqa: E402

from predictor.settings import ServingSettings  # noqa: E402

SAMPLE_SECONDS = 5.0
MAX_SLOPE_MIB_PER_MIN = 1.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model-dir", type=Path, help="serve this model dir instead of training a tiny one")
    args = parser.parse_args(argv)
    return in_workdir("bench-sustained-", lambda work: bench(args, work))


def bench(args: argparse.Namespace, work: Path) -> int:
    vision, args.model_dir = tiny_vision_model(work, args.model_dir)
    settings = ServingSettings.from_config({"imgsz": 64})
    bodies = [{"instances": [base64.b64encode(raw).decode()]} for raw in load_images(vision, 32)]
    server = Server(args.model_dir, settings, work / "server.log")
    memory = ProcessMemory(server.proc.pid)
    url = f"{server.url}/v1/models/{settings.model_name}:predict"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock, stop = threading.Lock(), threading.Event()

    def client(offset: int) -> None:
        session, i = requests.Session(), offset
        while not stop.is_set():
            started = time.perf_counter()
            try:
                code = session.post(url, json=bodies[i % len(bodies)], timeout=60).status_code
            except requests.RequestException:
                code = 0
            with lock:
                latencies.append(time.perf_counter() - started)
                statuses[code] = statuses.get(code, 0) + 1
            i += 1

    try:
        requests.post(url, json=bodies[0], timeout=60).raise_for_status()  # warm up
        threads = [threading.Thread(target=client, args=(k * 7,), daemon=True) for k in range(args.clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        samples: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - began) < args.minutes * 60:
            samples.append((elapsed / 60, memory.rss() / MB))
            time.sleep(SAMPLE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=70)
        seconds = time.monotonic() - began
    finally:
        server.stop()

    total, errors = sum(statuses.values()), sum(n for code, n in statuses.items() if code != 200)
    ordered = sorted(latencies)
    pct = {q: ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000 for q in (50, 95, 99)}
    print(f"\n{args.clients} clients for {seconds / 60:.1f} min: {total} requests ({total / seconds:.1f}/s), "
          f"{errors} errors {dict(sorted(statuses.items()))}; latency p50 {pct[50]:.1f} ms, p95 {pct[95]:.1f} ms, "
          f"p99 {pct[99]:.1f} ms")
    print(f"\n{'minute':>6} {'RSS median MiB':>15} {'vs minute 1':>12}")
    minutes = sorted({int(t) for t, _ in samples})
    first = statistics.median(r for t, r in samples if int(t) == minutes[0])
    for minute in minutes:
        median = statistics.median(r for t, r in samples if int(t) == minute)
        print(f"{minute + 1:>6} {median:>15.1f} {median - first:>+12.1f}")
    trend = slope([(t, r) for t, r in samples if t >= 1.0] or samples)
    print(f"\nRSS slope after the first minute: {trend:+.2f} MiB/min (limit {MAX_SLOPE_MIB_PER_MIN} MiB/min)")
    return 0 if errors == 0 and trend <= MAX_SLOPE_MIB_PER_MIN else 1


if __name__ == "__main__":
    sys.exit(main())
