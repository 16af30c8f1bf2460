"""The synthetic VISION tree: layout, quirks, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from visionops.data.errors import DataError
from visionops.data.synth import VISION_CLASSES, generate
from visionops.data.vision import find_products


def _coco(root: Path, product: str, split: str) -> dict:
    return json.loads((root / product / split / "_annotations.coco.json").read_text())


def test_default_tree_has_the_vision_layout_and_quirks(synth_vision_root: Path) -> None:
    assert find_products(synth_vision_root) == ["Casting", "PCB_1", "Screw"]
    extensions = {}
    for product in ("Casting", "PCB_1", "Screw"):
        for split, count in (("train", 20), ("val", 10), ("inference", 10)):
            coco = _coco(synth_vision_root, product, split)
            assert len(coco["images"]) == count
            for image in coco["images"]:
                with Image.open(synth_vision_root / product / split / image["file_name"]) as img:
                    assert img.size == (image["width"], image["height"])
                    extensions[product] = img.format
        names = [c["name"] for c in coco["categories"]]
        assert names[1:] == list(VISION_CLASSES[product])
        assert coco["categories"][0]["id"] == 0 and coco["categories"][0]["supercategory"] == "none"
        train = _coco(synth_vision_root, product, "train")
        assert all(a["category_id"] != 0 for a in train["annotations"])
        assert any("bbox" not in a for a in train["annotations"])
        assert any(a.get("bbox") == [] for a in train["annotations"])
        annotated = {a["image_id"] for a in train["annotations"]}
        assert len(annotated) < len(train["images"])  # some images without objects
        assert _coco(synth_vision_root, product, "inference")["annotations"] == []
    assert extensions == {"Casting": "PNG", "PCB_1": "JPEG", "Screw": "PNG"}
    # enough reference images for the drift check (>= 50) in train alone
    assert sum(len(_coco(synth_vision_root, p, "train")["images"]) for p in extensions) >= 50


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    kwargs = {"products": ["Screw"], "train_images": 2, "val_images": 1, "inference_images": 1, "imgsz": 64}
    a = generate(tmp_path / "a", seed=7, **kwargs)
    b = generate(tmp_path / "b", seed=7, **kwargs)
    c = generate(tmp_path / "c", seed=8, **kwargs)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "Screw/train/train_0000.png").read_bytes() != (c / "Screw/train/train_0000.png").read_bytes()


def test_a_product_looks_the_same_whatever_else_is_generated(tmp_path: Path) -> None:
    small = {"train_images": 1, "val_images": 1, "inference_images": 0, "imgsz": 64}
    alone = generate(tmp_path / "alone", products=["Wood"], **small)
    together = generate(tmp_path / "together", products=["wood", "Lens"], **small)
    (image,) = (alone / "Wood" / "train").glob("train_0000.*")
    assert image.read_bytes() == (together / image.relative_to(alone)).read_bytes()
    assert [c["name"] for c in _coco(together, "Lens", "val")["categories"]][1:] == list(VISION_CLASSES["Lens"])


def test_generate_replaces_its_own_tree_only(tmp_path: Path) -> None:
    small = {"products": ["Screw"], "train_images": 1, "val_images": 1, "inference_images": 0, "imgsz": 64}
    out = generate(tmp_path / "synth", **small)
    generate(out, seed=1, **small)
    assert json.loads((out / "synth.json").read_text())["seed"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not a previous synthetic dataset"):
        generate(foreign, **small)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown VISION product 'Bolt'; available: Cable"):
        generate(tmp_path / "x", products=["Bolt"])
    with pytest.raises(ValueError, match="train_images must be an integer >= 1, got 0"):
        generate(tmp_path / "x", train_images=0)
    assert not (tmp_path / "x").exists()


def test_every_vision_class_has_a_look_of_its_own() -> None:
    """A class is told by its defect (shape and colour), never only by the product around it."""
    from visionops.data.synth import class_style

    looks = [class_style(product, i) for product, classes in VISION_CLASSES.items() for i in range(len(classes))]
    assert len(looks) == 44 and len(set(looks)) == 44
    for product, classes in VISION_CLASSES.items():  # one product's classes differ in colour at least
        assert len({class_style(product, i)[1] for i in range(len(classes))}) == len(classes)
