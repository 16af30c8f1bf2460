"""Keep ultralytics off the network. Call :func:`configure` before importing ultralytics."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def _bundled_font() -> Path | None:
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return path if path.is_file() else None
    except ImportError:
        return None


def configure(config_dir: str | os.PathLike[str] | None = None) -> Path:
    """Set ultralytics' offline switches and a settings dir with local fonts; return that dir.

    Effects: ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, ``YOLO_CONFIG_DIR`` pointing at a
    folder whose ``Ultralytics/`` holds the fonts ultralytics would otherwise download, and
    (once ultralytics is importable) settings ``sync=False, mlflow=False``.
    """
    base = Path(
        config_dir
        or os.environ.get("YOLO_CONFIG_DIR")
        or Path(tempfile.gettempdir()) / "visionops-yolo"
    )
    fonts_dir = base / "Ultralytics"
    fonts_dir.mkdir(parents=True, exist_ok=True)
    font = _bundled_font()
    if font is not None:
        for name in _FONTS:
            target = fonts_dir / name
            if not target.exists():
                shutil.copyfile(font, target)
    os.environ["YOLO_CONFIG_DIR"] = str(base)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        from ultralytics import settings

        settings.update({"sync": False, "mlflow": False, "wandb": False, "tensorboard": False})
    except Exception:
        pass
    return base
