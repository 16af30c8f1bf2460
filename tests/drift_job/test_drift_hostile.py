"""The drift job on malformed batches: corrupt, empty, oversized and odd files.

A side with no readable image fails with one exact ``drift: error:`` line, exit 1, a ``failed`` result
and no output folder; unreadable and oversized images among readable ones are skipped and counted.
Oversized images are refused from their header, before decoding: one 144-megapixel PNG stays cheap.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drift_job.cli import main
from visionops import config

# Pillow warns about images over its own limit (89 Mpx) while opening them; the job's cap refuses them anyway.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
CAP = int(config.load("drift")["max_image_pixels"])
REPO = Path(__file__).resolve().parents[2]
NO_IMAGES = "holds no images (.bmp, .jpeg, .jpg, .png)"


def write_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A black 8-bit RGB PNG of ``width`` x ``height``, written row by row (never held in memory).

    ``rows`` < ``height`` stops the pixel data early: a truncated file whose header still says the full size.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        packer, row = zlib.compressobj(1), b"\x00" * (1 + 3 * width)  # filter byte 0, then the RGB bytes
        for _ in range(height if rows is None else rows):
            data = packer.compress(row)
            if data:
                out.write(chunk(b"IDAT", data))
        out.write(chunk(b"IDAT", packer.flush() if rows is None else packer.flush(zlib.Z_SYNC_FLUSH)))
        if rows is None:
            out.write(chunk(b"IEND", b""))
    return path


def _small(folder: Path, count: int, side: int = 20) -> None:
    """``count`` noisy ``side`` x ``side`` PNGs ``img_<i>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")


def _garbage(folder: Path, *names: str, content: bytes = b"not an image") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(content)


def _unidentified(path: Path) -> str:
    return f"cannot identify image file {str(path)!r}"


@pytest.fixture()
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, dict, Path]]:
    """Run the job on ``tmp/ref`` (5 good images unless the case writes its own) and ``tmp/cur``."""
    _small(tmp_path / "ref", 5)
    (tmp_path / "cur").mkdir()

    def go(*extra: str, reference: Path | None = None) -> tuple[int, str, dict, Path]:
        out, result_file = tmp_path / "results" / "out", tmp_path / "result.json"
        rc = main(["--reference", str(reference or tmp_path / "ref"), "--current", str(tmp_path / "cur"),
                   "--min-reference", "1", "--min-current", "100", "--tracking-uri", "",
                   "--output-dir", str(out), "--result-file", str(result_file), *extra])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        return rc, lines[-1] if lines else "", json.loads(result_file.read_text()), out

    return go


def _all_skipped(what: str, folder: Path, count: int, first: Path, reason: str) -> str:
    return f"{what} has no readable image: all {count} images under {folder} were skipped (first: {first}: {reason})"


def _corrupt(cur: Path) -> str:
    _garbage(cur, "a.png", "b.jpg", "c.jpeg")
    return _all_skipped("current", cur, 3, cur / "a.png", _unidentified(cur / "a.png"))


def _empty(cur: Path) -> str:
    return f"current folder {cur} {NO_IMAGES}"


def _not_images(cur: Path) -> str:
    _garbage(cur, "notes.txt", "labels.json", "a.png.bak")
    (cur / "folder.png").mkdir()
    return f"current folder {cur} {NO_IMAGES}"


def _zero_bytes(cur: Path) -> str:
    _garbage(cur, "a.png", "b.bmp", content=b"")
    return _all_skipped("current", cur, 2, cur / "a.png", _unidentified(cur / "a.png"))


def _truncated(cur: Path) -> str:
    write_png(cur / "cut.png", 64, 64, rows=10)
    return _all_skipped("current", cur, 1, cur / "cut.png", "image file is truncated")


def _bomb_header(cur: Path) -> str:
    write_png(cur / "bomb.png", 12000, 12000, rows=1)  # 144 megapixels declared, a few bytes on disk
    return _all_skipped("current", cur, 1, cur / "bomb.png",
                        f"12000x12000 pixels is over the limit of {CAP} pixels (max_image_pixels)")


def _pillow_bomb(cur: Path) -> str:
    write_png(cur / "huge.png", 20000, 20000, rows=1)  # beyond Pillow's own decompression-bomb limit
    return _all_skipped("current", cur, 1, cur / "huge.png", "Image size (400000000 pixels) exceeds limit of "
                        "178956970 pixels, could be decompression bomb DOS attack.")


def _all_oversized(cur: Path) -> str:
    _small(cur, 2, side=40)  # the reference's 20x20 images are under the cap
    return _all_skipped("current", cur, 2, cur / "img_0.png", "40x40 pixels is over the limit of 1000 pixels "
                        "(max_image_pixels)")


def _fifo_and_device(cur: Path) -> str:
    os.mkfifo(cur / "pipe.png")  # reading it would block forever
    (cur / "zero.jpg").symlink_to("/dev/zero")  # and this one never ends
    _garbage(cur, "x.png")
    return _all_skipped("current", cur, 1, cur / "x.png", _unidentified(cur / "x.png"))


def _html_named_png(cur: Path) -> str:
    _garbage(cur, "index.png", content=b"<html><body>not found</body></html>")
    return _all_skipped("current", cur, 1, cur / "index.png", _unidentified(cur / "index.png"))


CURRENT_CASES: list[tuple[str, Callable[[Path], str], tuple[str, ...]]] = [
    ("only-corrupt", _corrupt, ()),
    ("empty-folder", _empty, ()),
    ("no-image-files", _not_images, ()),
    ("zero-byte-files", _zero_bytes, ()),
    ("truncated-png", _truncated, ()),
    ("144-megapixel-header", _bomb_header, ()),
    ("pillow-decompression-bomb", _pillow_bomb, ()),
    ("all-over-the-cap", _all_oversized, ("--max-image-pixels", "1000")),
    ("fifo-and-device", _fifo_and_device, ()),
    ("html-named-png", _html_named_png, ()),
]


@pytest.mark.parametrize(("make", "extra"), [pytest.param(m, e, id=i) for i, m, e in CURRENT_CASES])
def test_a_batch_without_a_readable_image_fails_with_one_line_and_no_output(
    tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]], make: Callable[[Path], str], extra: tuple[str, ...]
) -> None:
    reason = make(tmp_path / "cur")
    rc, last, result, out = run(*extra)
    assert (rc, last) == (1, f"drift: error: {reason}")
    assert result == {"status": "failed", "error": reason}
    assert not out.parent.exists()


def test_a_reference_without_a_readable_image_fails_first(
    tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]]
) -> None:
    ref = tmp_path / "bad-ref"
    _garbage(ref, "r1.png", "r2.png")
    _corrupt(tmp_path / "cur")
    rc, last, result, out = run(reference=ref)
    reason = _all_skipped("reference", ref, 2, ref / "r1.png", _unidentified(ref / "r1.png"))
    assert (rc, last, result["error"]) == (1, f"drift: error: {reason}", reason)
    assert not out.parent.exists()


def test_a_vision_reference_split_without_images_fails(
    tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]]
) -> None:
    ref = tmp_path / "vision"
    (ref / "Casting" / "train").mkdir(parents=True)
    _small(tmp_path / "cur", 2)
    rc, last, _, out = run("--reference-split", "train", reference=ref)
    assert (rc, last) == (1, f"drift: error: reference folder {ref} (<Product>/train/) {NO_IMAGES}")
    assert not out.parent.exists()


def test_a_failed_run_leaves_an_existing_output_folder_as_it_was(
    tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]]
) -> None:
    out = tmp_path / "results" / "out"
    out.mkdir(parents=True)
    (out / "current_features.csv").write_text("from an earlier run\n")
    _corrupt(tmp_path / "cur")
    assert run()[0] == 1
    assert [p.name for p in out.iterdir()] == ["current_features.csv"]
    assert (out / "current_features.csv").read_text() == "from an earlier run\n"


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]]):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "out").write_text("keep")
    _small(tmp_path / "cur", 2)
    rc, last, _, out = run()
    assert (rc, last) == (1, f"drift: error: output folder {out} exists and is not a directory")
    assert out.read_text() == "keep"


@pytest.mark.parametrize(("value", "message"), [
    ("0", "argument --max-image-pixels: must be an integer >= 1, got 0"),
    ("many", "argument --max-image-pixels: invalid _positive_int value: 'many'"),
])
def test_a_bad_pixel_cap_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str):
    assert main(["--reference", str(tmp_path), "--current", str(tmp_path), "--max-image-pixels", value]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_and_oversized_images_among_good_ones_are_skipped_and_counted(
    tmp_path: Path, run: Callable[..., tuple[int, str, dict, Path]]
) -> None:
    cur = tmp_path / "cur"
    _small(cur, 3)
    _garbage(cur, "broken.png")
    write_png(cur / "bomb.png", 12000, 12000, rows=1)
    write_png(cur / "cut.png", 64, 64, rows=10)
    rc, _, result, out = run()
    assert rc == 0
    assert (result["status"], result["reason"]) == ("skipped", "current has 3 images, needs at least 100")
    assert (result["current_count"], result["unreadable_images"]) == (3, 3)
    assert sorted(p.name for p in out.iterdir()) == ["current_features.csv", "reference_features.csv"]


def _peak_rss_mb(args: list[str]) -> tuple[int, float, str]:
    """Run the drift job in a fresh interpreter; its exit code, peak RSS (MB) and last stderr line.

    The peak is the child's own ``VmHWM``: ``ru_maxrss`` would also count the parent's RSS at fork time.
    """
    code = ("import re, sys; from drift_job.cli import main; rc = main(sys.argv[1:]); "
            "status = open('/proc/self/status').read(); "
            "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, float(lines[-1]), lines[-2]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS from /proc")
def test_a_144_megapixel_png_is_skipped_before_decoding(tmp_path: Path) -> None:
    """A complete, valid 12000x12000 PNG (~0.5 GB decoded): skipped from its header, peak RSS stays low."""
    _small(tmp_path / "ref", 3)
    big = write_png(tmp_path / "cur" / "big.png", 12000, 12000)
    rc, peak_mb, error = _peak_rss_mb(["--reference", str(tmp_path / "ref"), "--current", str(tmp_path / "cur"),
                                       "--tracking-uri", ""])
    assert rc == 1
    assert error == "drift: error: " + _all_skipped("current", tmp_path / "cur", 1, big,
                                                    f"12000x12000 pixels is over the limit of {CAP} pixels "
                                                    "(max_image_pixels)")
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"
