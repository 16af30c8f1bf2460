"""A hanging apiserver stalls only the requests that need it (issue 23): the console's writes probe the cluster off
the event loop, so every other page still answers. The "apiserver" is a real TCP listener that accepts connections
and never answers (what a partitioned or overloaded control plane looks like to a client)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from consoletools import running_console

TOKEN = "hanging-apiserver-test"  # the double-submitted CSRF token (cookie = header), at least 16 characters
PROBE_TIMEOUT = 4  # the console's --request-timeout: how long its probe of the hanging apiserver waits


@pytest.fixture
def hanging_apiserver() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word; closed at the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def kubeconfig(path: Path, port: int) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: hang, cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: hang, context: {{cluster: hang, user: u, namespace: ml}}}}]
current-context: hang
""")
    return path


def test_pages_answer_while_a_write_waits_on_a_hanging_apiserver(hanging_apiserver: int, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", hanging_apiserver)
    with running_console(tmp_path / "console.log", "--kubeconfig", str(config),
                         "--request-timeout", str(PROBE_TIMEOUT)) as console:
        host = console.url.removeprefix("http://")
        write: dict[str, requests.Response] = {}

        def stop_a_run() -> None:  # a write: the console first asks whether the cluster is there
            write["answer"] = requests.post(
                f"{console.url}/api/trainingruns/r1/stop", json={"what": "job"}, timeout=60,
                headers={"Origin": f"http://{host}", "X-CSRF-Token": TOKEN}, cookies={"visionops_csrf": TOKEN})

        writer = threading.Thread(target=stop_a_run)
        started = time.monotonic()
        writer.start()
        time.sleep(1.0)  # the write is in the console, waiting on the apiserver's answer
        health = requests.get(f"{console.url}/healthz", timeout=PROBE_TIMEOUT / 2)
        assert health.status_code == 200
        said = write["answer"].text if "answer" in write else ""
        assert writer.is_alive(), f"the write should still wait on the apiserver, but answered: {said}"
        writer.join(timeout=60)
        assert time.monotonic() - started >= PROBE_TIMEOUT / 2
        assert write["answer"].status_code == 503, write["answer"].text
        assert "cluster" in write["answer"].json()["message"].lower()
