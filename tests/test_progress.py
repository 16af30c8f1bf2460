"""Progress of long CLI work: the real functions on a pseudo-terminal (a bar) and off one (plain lines, as in a
Job's log: no carriage return, and stdout unchanged)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from training_job.epoch_logger import EpochLogger
from visionops import demo
from visionops.analysis import predict
from visionops.data import cli as data_cli
from visionops.data.classmap import load_class_map
from visionops.data.prepare import PreparedDataset
from visionops.progress import Steps, bar, meter, on_terminal


class Screen:
    """A pseudo-terminal of 120 columns; :meth:`attach` makes it stderr, :meth:`close` returns what it shows."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.stream = os.fdopen(follower, "w")
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)  # a full pty would block the writer
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 4096)
            except OSError:  # EIO: the other end is closed and everything was read
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def attach(self) -> None:
        self.monkeypatch.setattr(sys, "stderr", self.stream)

    def close(self) -> str:
        if not self.stream.closed:
            self.stream.close()
            self._reader.join(timeout=10)
            os.close(self.leader)
        return b"".join(self._chunks).decode()


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Screen]:
    """stderr is a terminal from the test's first line (pytest's capture swaps it back in after fixtures)."""
    terminal = Screen(monkeypatch)
    yield terminal
    terminal.close()


def test_bar_on_a_terminal(screen: Screen) -> None:
    screen.attach()
    assert on_terminal()
    assert list(bar(range(5), total=5, desc="reading")) == [0, 1, 2, 3, 4]
    shown = screen.close()
    assert "reading:   0%|" in shown and "/5 [" in shown and "\r" in shown


def test_bar_off_a_terminal_is_plain_and_sparse(capsys: pytest.CaptureFixture[str]) -> None:
    assert not on_terminal()
    assert list(bar(range(5), total=5, desc="reading")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""  # a short loop: not a line
    said: list[str] = []
    assert list(bar(range(5), total=5, desc="reading", say=said.append, every=0)) == [0, 1, 2, 3, 4]
    assert said == [f"reading: {n}/5 ({n * 20}%) after 0 s" for n in range(1, 5)]
    list(bar(range(3), total=3, desc="reading", every=0))
    assert capsys.readouterr().err == "reading: 1/3 (33%) after 0 s\nreading: 2/3 (66%) after 0 s\n"


def test_tty_parameter_forces_the_decision(screen: Screen, monkeypatch: pytest.MonkeyPatch) -> None:
    screen.attach()
    said: list[str] = []
    list(bar(range(3), total=3, desc="quiet", tty=False, say=said.append, every=0))
    assert len(said) == 2 and "quiet" not in screen.close()
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    list(bar(range(3), total=3, desc="forced", tty=True))
    assert "forced:   0%|" in captured.getvalue()
    with meter(3, "silent", tty=False) as progress:
        progress.update(3)
    assert "silent" not in captured.getvalue()


def test_data_prepare_on_a_terminal(screen: Screen, synth_vision_root: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    screen.attach()
    out = tmp_path / "out"
    assert data_cli.main(["prepare", "--source", str(synth_vision_root), "--out", str(out),
                          "--products", "Casting"]) == 0
    assert capsys.readouterr().out == f"{out / 'dataset.yaml'}\n"  # stdout as before
    shown = screen.close()
    for what in ("read Casting/train", "read Casting/val", "write Casting/train", "write Casting/val"):
        assert f"{what}:   0%|" in shown, shown  # the bars
    assert "read Casting/train: " in shown and f"prepared {out}: " in shown  # the lines as before


def test_data_prepare_off_a_terminal(synth_vision_root: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert data_cli.main(["prepare", "--source", str(synth_vision_root), "--out", str(out),
                          "--products", "Casting"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'dataset.yaml'}\n"
    lines = captured.err.splitlines()
    assert "\r" not in captured.err and "%" not in captured.err
    assert [line.split(":")[0] for line in lines] == [
        "read Casting/train", "read Casting/val", "wrote train", "wrote val", f"prepared {out}"]


class _Client:
    def log_batch(self, *_args: object, **_kwargs: object) -> None:
        pass


def _train(logger: EpochLogger, epochs: int) -> None:
    """What ultralytics calls: each epoch, then the final validation of best.pt, then the end."""
    trainer = SimpleNamespace(epoch=0, tloss=None, metrics={}, lr={})
    for epoch in range(epochs):
        trainer.epoch, trainer.metrics = epoch, {"metrics/mAP50(B)": 0.25 * (epoch + 1)}
        logger.on_train_epoch_start(trainer)
        logger.on_train_epoch_end(trainer)
        logger.on_fit_epoch_end(trainer)
    trainer.epoch += 1  # final validation of best.pt (ultralytics' final_eval): not an epoch
    logger.on_fit_epoch_end(trainer)
    logger.on_train_end(trainer)


def test_epoch_bar_on_a_terminal(screen: Screen) -> None:
    screen.attach()
    logger = EpochLogger(_Client(), "run", 3, lambda line: print(f"[train] {line}", file=sys.stderr))
    _train(logger, 2)
    shown = screen.close()
    assert "[train] epoch 1/3 map50=0.250" in shown and "[train] epoch 2/3 map50=0.500" in shown
    assert "training |" in shown and "epoch 2/3 [" in shown and "mAP50 0.500]" in shown
    assert logger.completed == 2


def test_epoch_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    logger = EpochLogger(_Client(), "run", 3, lambda line: print(f"[train] {line}", file=sys.stderr))
    _train(logger, 3)
    err = capsys.readouterr().err
    assert [line.split(" (")[0] for line in err.splitlines()] == [
        "[train] epoch 1/3 map50=0.250", "[train] epoch 2/3 map50=0.500", "[train] epoch 3/3 map50=0.750"]
    assert "\r" not in err and "|" not in err


def test_demo_steps_on_a_terminal(screen: Screen, capsys: pytest.CaptureFixture[str]) -> None:
    screen.attach()
    steps = Steps(demo.STEPS, "demo")
    demo.step(3, "training YOLOv8n", steps)
    steps.finish()
    assert capsys.readouterr().out == "\n[3/7] training YOLOv8n\n"  # stdout as before
    lines = [line for line in screen.close().splitlines() if line]
    assert len(lines) == 2 and "\r" not in "".join(lines)  # whole lines: subprocesses write between steps
    assert lines[0].startswith("demo |") and lines[0].endswith("| step 3/7 [00:00] prepare + train")
    assert lines[1] == "demo |" + "\u2588" * 20 + "| step 7/7 [00:00] done"


def test_demo_steps_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    steps = Steps(demo.STEPS, "demo")
    demo.step(1, "generating", steps)
    steps.finish()
    assert capsys.readouterr() == ("\n[1/7] generating\n", "")


@pytest.mark.slow
def test_analyze_predictions_on_a_terminal(screen: Screen, tiny_model_dir: Path,
                                           prepared_dataset: PreparedDataset) -> None:
    screen.attach()
    paths = sorted((prepared_dataset.root / "images" / "val").iterdir())[:6]
    names = load_class_map(tiny_model_dir / "class_map.json").names
    said: list[str] = []
    found = predict(tiny_model_dir / "best.pt", paths, names, imgsz=64, conf=0.01, nms_iou=0.5, device="cpu",
                    say=said.append)
    assert len(found) == len(paths) and said == []
    assert "predicting val images:   0%|" in screen.close()


@pytest.mark.slow
def test_analyze_predictions_off_a_terminal(tiny_model_dir: Path, prepared_dataset: PreparedDataset,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted((prepared_dataset.root / "images" / "val").iterdir())[:6]
    names = load_class_map(tiny_model_dir / "class_map.json").names
    assert len(predict(tiny_model_dir / "best.pt", paths, names, imgsz=64, conf=0.01, nms_iou=0.5,
                       device="cpu")) == len(paths)
    assert capsys.readouterr().err == ""
