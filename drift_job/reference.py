"""The reference set from lineage: the images a registered model version was trained on.

The version's lineage (:func:`visionops.model_versions.training_data`) names the dataset the training job
read (a VISION root, or a dataset it found already prepared) and the products it selected. The reference
is that dataset's ``split`` (default ``train``): ``<source>/<Product>/<split>/`` of each product for a
VISION root, ``<source>/images/<split>/`` for a prepared dataset. A prepared dataset is also checked
against the recorded digest (hashing its files is cheap); a VISION root is not, since its digest is
that of the converted dataset, which only a full conversion would reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drift_job.features import IMAGE_EXTENSIONS, collect_images
from visionops.model_versions import ResolvedVersion, TrainingData


@dataclass(frozen=True)
class LineageReference:
    """The reference images found through a model version, and what the result records about them."""

    paths: list[Path]
    folder: str
    version: ResolvedVersion
    data: TrainingData
    split: str
    digest_verified: bool

    def describe(self) -> dict[str, Any]:
        """The result's ``reference_from``: the version and the dataset it was trained on."""
        return {**self.version.describe(), "dataset_digest": self.data.digest, "dataset_source": self.data.source,
                "products": self.data.products, "split": self.split, "digest_verified": self.digest_verified}


def lineage_reference(version: ResolvedVersion, data: TrainingData, split: str) -> LineageReference:
    """Collect the reference images of ``data`` (``ValueError``/``FileNotFoundError`` with one line when the
    dataset is not where the version says, or a prepared dataset no longer matches its digest)."""
    from visionops.data.prepare import is_prepared_dataset
    from visionops.lineage import dataset_digest

    source = Path(data.source)
    where = f"dataset {data.source} of model version {version.ref.name}/{version.version}"
    if not source.is_dir():
        raise FileNotFoundError(f"{where} is not a directory here (the drift job must see the training data "
                                "at the same path)")
    if not is_prepared_dataset(source):
        paths = collect_images(source, split, data.products or None)
        return LineageReference(paths, f"{source} (<Product>/{split}/)", version, data, split, False)
    now = dataset_digest(source)
    if now != data.digest:
        raise ValueError(f"{where} changed since training: its digest is {now}, the version records {data.digest}")
    folder = source / "images" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{where} has no images/{split}/ folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return LineageReference(paths, str(folder), version, data, split, True)
