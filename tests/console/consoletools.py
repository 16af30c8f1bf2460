"""Helpers of the console's tests: console processes (``python -m visionops_console``) and the dataset PVC's name.
The browser itself (chromium, the guard, screenshots) is :mod:`fixtures.browser`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from visionops.local_mlflow import free_port

REPO = Path(__file__).resolve().parents[2]
DATASET_PVC = "visionops-datasets"


@dataclass
class ConsoleProcess:
    """A running ``python -m visionops_console`` and its base URL."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_console(log: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> ConsoleProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "visionops_console", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ))
    console = ConsoleProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the console exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{console.url}/healthz", timeout=2).status_code == 200:
                return console
        time.sleep(0.3)
    console.stop()
    raise RuntimeError(f"the console did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_console(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[ConsoleProcess]:
    console = start_console(log, *args, env=env)
    try:
        yield console
    finally:
        console.stop()

