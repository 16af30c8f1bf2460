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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("brightness_mean", "brightness_std", "contrast", "sharpness")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _value_stats(rgb: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all values of ``rgb`` on the 0-1 scale."""
    if rgb.dtype == np.uint8:  # exact and cheap: a 256-bin histogram instead of a float copy
        counts = np.bincount(rgb.reshape(-1), minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64) / 255.0
        total = counts.sum()
        mean = float(counts @ levels / total)
        variance = float(counts @ (levels - mean) ** 2 / total)
        return mean, variance**0.5
    scaled = rgb.astype(np.float64) / 255.0
    return float(scaled.mean()), float(scaled.std())


def image_features(pixels: np.ndarray) -> dict[str, float]:
    """Features of one image given as an ``HxWx3`` (RGB) or ``HxW`` (grey) array on the 0-255 scale."""
    rgb = np.asarray(pixels)
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[:, :, :3]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey array, got shape {np.shape(pixels)}")
    brightness_mean, brightness_std = _value_stats(rgb)
    grey = rgb @ (LUMA_WEIGHTS / 255.0).astype(np.float32)  # float32 HxW on the 0-1 scale
    if min(grey.shape) >= 2:
        gy, gx = np.gradient(grey)
        sharpness = float(np.mean(gx * gx + gy * gy, dtype=np.float64))
    else:
        sharpness = 0.0  # a gradient needs two pixels along each axis
    return {
        "brightness_mean": brightness_mean,
        "brightness_std": brightness_std,
        "contrast": float(grey.std(dtype=np.float64)),
        "sharpness": sharpness,
    }


def load_rgb(path: Path, max_side: int | None = None) -> np.ndarray:
    """Read an image as an ``HxWx3`` uint8 RGB array.

    ``max_side`` (optional) shrinks images whose longer side exceeds it, keeping the aspect ratio, to
    bound memory on huge images. It changes ``sharpness`` (gradients are per pixel), so reference
    and current tables must be built with the same value.
    """
    with Image.open(path) as img:
        if max_side:
            img.draft("RGB", (max_side, max_side))  # JPEG only: decode at a reduced scale
        rgb = img.convert("RGB")
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


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


def feature_table(paths: Iterable[Path], max_side: int | None = None) -> pd.DataFrame:
    """One row per readable image: ``image`` (its path) and the :data:`FEATURES` columns.

    Images are read one at a time. Unreadable images are skipped with a warning; their paths are
    listed in ``table.attrs["skipped"]``.
    """
    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    for path in paths:
        try:
            feats = image_features(load_rgb(Path(path), max_side))
        # ImportError: once ultralytics is imported it patches Image.open to try the optional pi_heif plugin
        except (OSError, ValueError, ImportError, Image.DecompressionBombError) as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
            skipped.append(str(path))
            continue
        rows.append({"image": str(path), **feats})
    table = pd.DataFrame(rows, columns=["image", *FEATURES])
    table = table.astype({name: "float64" for name in FEATURES})
    table.attrs["skipped"] = skipped
    return table
