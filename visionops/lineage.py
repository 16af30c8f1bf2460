"""Dataset versions: a digest of exactly the data a model learned from, and how a run records it.

The digest covers the prepared YOLO dataset a training run trains on: its class map and, for each labeled
split, every image's name and bytes and its label file's text. Nothing that depends on where the data
lies (paths, the data card's source) enters it, so two runs on the same data get the same digest, while a
changed annotation, image, product selection or class map changes it. The training job logs it as an MLflow
dataset input (with the data card as its profile), as a run tag that the registered model version
copies, and writes it into its result document (so the TrainingRun's status carries it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from visionops.contract import CLASS_MAP_FILE, DIGEST_TAG, SOURCE_TAG
from visionops.contract import DATASET_ARTIFACT_DIR as DATASET_ARTIFACT_DIR  # re-exported (console, training job)

DIGEST_PREFIX = "sha256:"
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_digest(root: str | Path, splits: tuple[str, ...] = ("train", "val")) -> str:
    """``sha256:<hex>`` of a prepared dataset at ``root`` (``class_map.json``, ``images/<split>/*`` and the
    matching ``labels/<split>/<stem>.txt``; an image without a label file counts as having no boxes)."""
    root = Path(root)
    total = hashlib.sha256()
    class_map = json.loads((root / CLASS_MAP_FILE).read_text())
    total.update(b"class_map " + json.dumps(class_map, sort_keys=True).encode() + b"\n")
    for split in splits:
        images = root / "images" / split
        if not images.is_dir():
            continue
        for image in sorted(p for p in images.iterdir() if p.is_file()):
            label = root / "labels" / split / f"{image.stem}.txt"
            label_hash = _file_sha256(label) if label.is_file() else "-"
            total.update(f"{split}/{image.name} {_file_sha256(image)} {label_hash}\n".encode())
    return DIGEST_PREFIX + total.hexdigest()


def short(digest: str) -> str:
    """The first 12 hex digits, for names and tables (``sha256:`` dropped)."""
    return digest.removeprefix(DIGEST_PREFIX)[:12]


def dataset_name(products: list[str]) -> str:
    """The dataset input's name in MLflow: ``vision[<products>]``."""
    return f"vision[{','.join(products)}]"


def log_dataset_input(client: Any, run_id: str, *, digest: str, source: str, products: list[str],
                      card: dict[str, Any]) -> None:
    """Record the dataset as an MLflow dataset input of the run (name, digest, source, the card as profile)
    and tag the run with the digest and source (the registry copies the digest onto the model version)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    profile = {"products": products, "classes": len(card.get("names", [])),
               "splits": {name: split.get("images") for name, split in card.get("splits", {}).items()}}
    dataset = Dataset(name=dataset_name(products), digest=short(digest), source_type="local",
                      source=json.dumps({"uri": source, "digest": digest}), schema=None, profile=json.dumps(profile))
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
    client.set_tag(run_id, DIGEST_TAG, digest)
    client.set_tag(run_id, SOURCE_TAG, source)
