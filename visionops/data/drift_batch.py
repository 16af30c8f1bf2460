"""Simulate a drifted batch of images: a perturbed sample of a folder, with its ``metadata.json``.

Kinds (``s`` is the severity):

- ``brightness``: pixel values multiplied by ``1 + s``;
- ``noise``: additive gaussian noise with standard deviation ``50 * s`` (0-255 scale);
- ``blur``: gaussian blur of radius ``5 * s`` pixels;
- ``mixed``: two different kinds of the three above, chained; which two and in which order
  follows from the seed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from visionops.data.errors import DataError
from visionops.data.staging import check_target, staged_dir

KINDS: tuple[str, ...] = ("brightness", "noise", "blur", "mixed")
BASIC_KINDS: tuple[str, ...] = ("brightness", "noise", "blur")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


def validate(kind: str, severity: float, fraction: float) -> None:
    """Raise ``ValueError`` naming the bad argument and its accepted range."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if not isinstance(severity, int | float) or not np.isfinite(severity) or severity < 0:
        raise ValueError(f"severity must be a finite number >= 0; got {severity!r}")
    if not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (0 < fraction <= 1); got {fraction!r}")


def find_images(source: Path) -> list[Path]:
    """Every image file under ``source`` (recursively), sorted for a stable selection."""
    return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def perturb(img: Image.Image, kind: str, severity: float, rng: np.random.Generator) -> Image.Image:
    """Apply one basic perturbation (``brightness``, ``noise`` or ``blur``) to an RGB or grey image."""
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=5.0 * severity))
    arr = np.asarray(img, dtype=np.float32)
    if kind == "brightness":
        arr = arr * (1.0 + severity)
    elif kind == "noise":
        arr = arr + rng.normal(0.0, 50.0 * severity, size=arr.shape).astype(np.float32)
    else:
        raise ValueError(f"kind must be one of {', '.join(BASIC_KINDS)}; got {kind!r}")
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode=img.mode)


def _unique_name(rel: Path, taken: set[str]) -> str:
    """A flat file name from a relative path (``Casting/val/a.jpg`` → ``Casting_val_a.jpg``), unique."""
    stem = "_".join((*rel.parent.parts, rel.stem)) if rel.parent.parts else rel.stem
    name = f"{stem}{rel.suffix}"
    counter = 1
    while name.lower() in taken:
        name = f"{stem}_{counter}{rel.suffix}"
        counter += 1
    taken.add(name.lower())
    return name


def _save(img: Image.Image, dest: Path) -> None:
    if dest.suffix.lower() in {".jpg", ".jpeg"}:
        img.save(dest, quality=95)
    else:
        img.save(dest)


def _is_previous_batch(path: Path) -> bool:
    return (path / "metadata.json").is_file() and (path / "images").is_dir()


def simulate(
    source: Path, out: Path, kind: str, severity: float, fraction: float, seed: int = 0
) -> dict:
    """Write a drifted copy of ``fraction`` of the images under ``source`` to ``out/images/``.

    Also writes ``out/metadata.json`` and returns the same metadata. ``out`` must not exist, be
    empty or hold a previous drift batch (which is replaced). The batch is built in a temporary
    sibling folder and swapped in at the end, so an error leaves nothing half-written.
    """
    validate(kind, severity, fraction)
    source, out = Path(source), Path(out).absolute()
    if not source.is_dir():
        raise DataError(f"source {source} does not exist or is not a directory")
    check_target(out, _is_previous_batch, "drift batch")
    images = [p for p in find_images(source) if not p.absolute().is_relative_to(out)]
    if not images:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {source}")
    rng = np.random.default_rng(seed)
    count = min(len(images), max(1, round(fraction * len(images))))
    chosen = sorted(rng.choice(len(images), size=count, replace=False).tolist())
    steps = [str(k) for k in rng.choice(BASIC_KINDS, size=2, replace=False)] if kind == "mixed" else [kind]

    with staged_dir(out, _is_previous_batch, "drift batch") as staging:
        (staging / "images").mkdir()
        files: list[dict[str, str]] = []
        taken: set[str] = set()
        for index in chosen:
            path = images[index]
            rel = path.relative_to(source)
            try:
                with Image.open(path) as original:
                    img = original.convert(original.mode if original.mode in ("L", "RGB") else "RGB")
            except (OSError, ImportError) as exc:  # ImportError: ultralytics' Image.open patch (pi_heif)
                raise DataError(f"cannot read image {path}: {exc}") from exc
            for step in steps:
                img = perturb(img, step, severity, rng)
            name = _unique_name(rel, taken)
            _save(img, staging / "images" / name)
            files.append({"file": f"images/{name}", "source": rel.as_posix()})
        metadata = {
            "kind": kind,
            "steps": steps,
            "severity": float(severity),
            "fraction": float(fraction),
            "seed": int(seed),
            "source": str(source.resolve()),
            "source_count": len(images),
            "count": len(files),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata
