"""Per-image drift features and the feature tables Evidently compares.

Every feature is computed on the RGB image scaled to [0, 1] (RGB/255):

- ``brightness_mean``: mean of all RGB values;
- ``brightness_std``: standard deviation of all RGB values;
- ``contrast``: standard deviation of the grey image (ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B);
- ``sharpness``: mean of the squared gradients of the grey image, ``mean(gx**2 + gy**2)`` with
  ``numpy.gradient`` (central differences inside, one-sided at the borders).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from visionops.images import open_image
from visionops.progress import bar

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("brightness_mean", "brightness_std", "contrast", "sharpness")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
# Images are read in row strips of about this many pixels: the float temporaries stay near 30 MB.
STRIP_PIXELS = 1 << 20
_GREY_WEIGHTS = (LUMA_WEIGHTS / 255.0).astype(np.float32)
_LEVELS = np.arange(256, dtype=np.float64) / 255.0


class _Moments:
    """Count, mean and sum of squared deviations of values seen strip by strip (Chan et al.'s merge)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def add(self, count: float, mean: float, m2: float) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    @property
    def std(self) -> float:
        return (self.m2 / self.count) ** 0.5


def _value_moments(rgb: np.ndarray) -> tuple[float, float, float]:
    """Count, mean and sum of squared deviations of all values of ``rgb`` on the 0-1 scale."""
    if rgb.dtype == np.uint8:  # exact and cheap: a 256-bin histogram instead of a float copy
        counts = np.bincount(rgb.reshape(-1), minlength=256).astype(np.float64)
        total = float(counts.sum())
        mean = float(counts @ _LEVELS / total)
        return total, mean, float(counts @ (_LEVELS - mean) ** 2)
    scaled = rgb.astype(np.float64) / 255.0
    return float(scaled.size), float(scaled.mean()), float(scaled.var() * scaled.size)


def _as_rgb(block: np.ndarray) -> np.ndarray:
    """An ``HxW`` grey or ``HxWx4`` RGBA block as ``HxWx3``."""
    if block.ndim == 2:
        return np.repeat(block[:, :, None], 3, axis=2)
    return block[:, :, :3] if block.shape[2] == 4 else block


def _strip_features(
    read_rows: Callable[[int, int], np.ndarray], height: int, width: int, strip_pixels: int = STRIP_PIXELS
) -> dict[str, float]:
    """Features of an ``height`` x ``width`` image read as row strips: ``read_rows(top, bottom)`` -> its rows.

    Strips of about ``strip_pixels`` pixels, with one row of overlap for the vertical gradient, keep
    the float temporaries small whatever the image size; the result equals the whole-image formulas.
    """
    values, grey_values = _Moments(), _Moments()
    gradient = height >= 2 and width >= 2  # a gradient needs two pixels along each axis
    squared_gradients = 0.0
    step = max(1, strip_pixels // width)
    for top in range(0, height, step):
        bottom = min(top + step, height)
        first, last = (max(top - 1, 0), min(bottom + 1, height)) if gradient else (top, bottom)
        rgb = _as_rgb(read_rows(first, last))
        own = slice(top - first, bottom - first)  # the strip's rows without the overlap
        values.add(*_value_moments(rgb[own]))
        grey = rgb @ _GREY_WEIGHTS  # float32 on the 0-1 scale
        mine = grey[own]
        grey_values.add(float(mine.size), float(mine.mean(dtype=np.float64)),
                        float(mine.var(dtype=np.float64)) * mine.size)
        if gradient:
            gy, gx = np.gradient(grey)
            squared_gradients += float(np.sum(gx[own] ** 2 + gy[own] ** 2, dtype=np.float64))
    return {
        "brightness_mean": values.mean,
        "brightness_std": values.std,
        "contrast": grey_values.std,
        "sharpness": squared_gradients / (height * width) if gradient else 0.0,
    }


def image_features(pixels: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> dict[str, float]:
    """Features of one image given as an ``HxWx3`` (RGB), ``HxWx4`` (RGBA) or ``HxW`` (grey) array, 0-255 scale."""
    array = np.asarray(pixels)
    grey_or_rgb = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if not grey_or_rgb or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey array, got shape {np.shape(pixels)}")
    return _strip_features(lambda top, bottom: array[top:bottom], array.shape[0], array.shape[1], strip_pixels)


def file_features(path: Path, max_pixels: int, max_side: int | None = None) -> dict[str, float]:
    """Features of an image file, decoded once and read as RGB strips (memory: the decoded image plus a strip).

    Images over ``max_pixels`` raise :class:`~visionops.images.ImageTooLarge` before they are decoded.
    ``max_side`` (optional) shrinks images whose longer side exceeds it, keeping the aspect ratio. It
    changes ``sharpness`` (gradients are per pixel), so reference and current tables must be built
    with the same value.
    """
    with open_image(path, max_pixels) as img:
        image: Image.Image = img
        if max_side:
            image.draft("RGB", (max_side, max_side))  # JPEG only: decode at a reduced scale
            if max(image.size) > max_side:
                image = image.convert("RGB")
                image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        image.load()
        width, height = image.size
        return _strip_features(lambda top, bottom: np.asarray(image.crop((0, top, width, bottom)).convert("RGB")),
                               height, width)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def collect_images(root: Path, split: str | None = None, products: Sequence[str] | None = None) -> list[Path]:
    """Image files to compare, sorted.

    With ``split``: the images of ``root/<Product>/<split>/`` (VISION layout), optionally only the
    named ``products``. Without: every image under ``root``, recursively.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    if split is None:
        if products:
            raise ValueError("products can only be selected together with a split (VISION layout)")
        return sorted(p for p in root.rglob("*") if _is_image(p))
    available = sorted(p.name for p in root.iterdir() if (p / split).is_dir())
    if not available:
        raise ValueError(f"no <Product>/{split}/ folders under {root}: expected the VISION layout")
    wanted = list(products) if products else available
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"products {missing} have no '{split}' folder under {root}; available: {available}")
    return sorted(p for name in wanted for p in (root / name / split).iterdir() if _is_image(p))


def feature_table(paths: Sequence[Path], max_pixels: int, max_side: int | None = None,
                  desc: str = "image features") -> pd.DataFrame:
    """One row per readable image: ``image`` (its path) and the :data:`FEATURES` columns.

    Images are read one at a time (a progress bar named ``desc`` on a terminal). Unreadable images and
    images over ``max_pixels`` are skipped with a warning; ``table.attrs["skipped"]`` maps each skipped
    path to the reason.
    """
    rows: list[dict[str, object]] = []
    skipped: dict[str, str] = {}
    for path in bar(paths, total=len(paths), desc=desc):
        try:
            feats = file_features(Path(path), max_pixels, max_side)
        # ImportError: once ultralytics is imported it patches Image.open to try the optional pi_heif plugin
        except (OSError, ValueError, EOFError, SyntaxError, ImportError, Image.DecompressionBombError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, ImportError):  # the patched opener's HEIF fallback: Pillow could not identify it
                reason = f"cannot identify image file {str(path)!r}"
            log.warning("skipping image %s: %s", path, reason)
            skipped[str(path)] = reason
            continue
        rows.append({"image": str(path), **feats})
    table = pd.DataFrame(rows, columns=["image", *FEATURES])
    table = table.astype({name: "float64" for name in FEATURES})
    table.attrs["skipped"] = skipped
    return table
