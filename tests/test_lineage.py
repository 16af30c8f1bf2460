"""Dataset versions (visionops.lineage) on real prepared datasets: the digest follows the data, not its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from visionops.data.prepare import prepare
from visionops.lineage import dataset_digest


@pytest.fixture(scope="module")
def prepared(synth_vision_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(synth_vision_root, tmp_path_factory.mktemp("lineage") / "a", ["Casting", "Screw"]).root


def test_same_data_same_digest_wherever_it_lies(prepared: Path, synth_vision_root: Path, tmp_path: Path) -> None:
    again = prepare(synth_vision_root, tmp_path / "b", ["Casting", "Screw"]).root
    assert dataset_digest(again) == dataset_digest(prepared)
    moved = tmp_path / "moved"
    shutil.copytree(prepared, moved)
    assert dataset_digest(moved) == dataset_digest(prepared)


def test_a_changed_annotation_changes_the_digest(prepared: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(prepared, changed)
    label = sorted((changed / "labels" / "train").glob("*.txt"))[0]
    lines = label.read_text().splitlines()
    cls, x, y, w, h = lines[0].split()
    lines[0] = " ".join([cls, x, y, f"{float(w) * 0.9:.6f}", h])
    label.write_text("\n".join(lines) + "\n")
    assert dataset_digest(changed) != dataset_digest(prepared)


def test_other_products_another_digest(prepared: Path, synth_vision_root: Path, tmp_path: Path) -> None:
    other = prepare(synth_vision_root, tmp_path / "c", ["Casting"]).root
    assert dataset_digest(other) != dataset_digest(prepared)
