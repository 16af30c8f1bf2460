"""Helpers of the console's browser tests: console processes, the browser guard, screenshots."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from visionops.local_mlflow import free_port

REPO = Path(__file__).resolve().parents[2]
# `make pictures` (VISIONOPS_PICTURES=1): the run the pages show trains with the demo's recipe, and the screenshots
# are the README's (docs/console/); a plain test run writes them under .visionops/screenshots/ to look at.
PICTURES = os.environ.get("VISIONOPS_PICTURES") == "1"
SCREENSHOTS = REPO / "docs" / "console" if PICTURES else REPO / ".visionops" / "screenshots"
CHROMIUM = Path(os.environ.get("VISIONOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DATASET_PVC = "visionops-datasets"
VIEWPORT = {"width": 1440, "height": 960}


def browser_missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing: install Debian's chromium with 'sudo hack/node-deps.sh browser'"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


# -- console processes --------------------------------------------------------------------------------------


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


# -- the browser --------------------------------------------------------------------------------------------


@dataclass
class BrowserGuard:
    """Collects what a page must not do: console errors, page errors, failed requests, HTTP error answers."""

    expected: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def expect(self, url_part: str, status: int) -> None:
        """The next answers of ``status`` for a URL containing ``url_part`` are wanted (e.g. a rejected form)."""
        self.expected.append((url_part, status))

    def _allowed(self, url: str, status: int | None) -> bool:
        return any(part in url and (status is None or status == code) for part, code in self.expected)

    def attach(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            if message.type != "error":
                return
            url = (message.location or {}).get("url", "")
            if "Failed to load resource" in message.text and self._allowed(url, None):
                return
            self.problems.append(f"console error: {message.text} ({url})")

        def on_response(response: Any) -> None:
            if response.status >= 400 and not self._allowed(response.url, response.status):
                self.problems.append(f"HTTP {response.status} for {response.request.method} {response.url}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        def on_failed(request: Any) -> None:
            # net::ERR_ABORTED is the browser cancelling a request itself (an image replaced by a re-render, a
            # navigation, the page closing), not a request that failed.
            if "ERR_ABORTED" not in str(request.failure):
                self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

        page.on("requestfailed", on_failed)
        page.on("response", on_response)

    def check(self) -> None:
        assert not self.problems, "the browser saw problems:\n" + "\n".join(self.problems)


def screenshot(page: Any, name: str) -> Path:
    """Write ``<SCREENSHOTS>/<name>.png`` (the page as a person sees it, whole)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.wait_for_load_state("load")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def until(page: Any, expression: str, timeout: float = 20_000) -> None:
    """Wait until the JavaScript ``expression`` is truthy in ``page``. Passed as a function, because the console's
    Content-Security-Policy (no 'unsafe-eval') forbids the string evaluation Playwright uses for expressions."""
    page.wait_for_function(f"() => ({expression})", timeout=timeout)
