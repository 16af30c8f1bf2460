"""Start a local ``mlflow server`` (sqlite + proxied local artifacts): for the demo and the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(workdir: Path, port: int | None = None,
                        auth_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` on loopback with sqlite and proxied local artifacts; wait until healthy.

    ``auth_env``: run MLflow's basic-auth app with this environment added (``MLFLOW_AUTH_CONFIG_PATH``, the
    admin's ``MLFLOW_AUTH_ADMIN_*``, ``MLFLOW_FLASK_SERVER_SECRET_KEY``), as the chart does."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # telemetry off: visionops.telemetry
    env.update(auth_env or {})
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(workdir / "mlflow-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [
            str(mlflow_bin), "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            *(["--app-name", "basic-auth"] if auth_env else []),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(workdir / 'mlflow-server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not become healthy in 120 s")
