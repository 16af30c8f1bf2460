"""The VISION -> YOLO converter against synthetic VISION trees (real pycocotools, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.datasets import ann, leftovers, write_split

from visionops.data.errors import DataError
from visionops.data.prepare import PreparedDataset, is_prepared_dataset, prepare

# ---------------------------------------------------------------- hand-made VISION trees


ROBOFLOW_CATEGORIES = [
    {"id": 0, "name": "defects", "supercategory": "none"},
    {"id": 1, "name": "Inclusoes", "supercategory": "defects"},
    {"id": 2, "name": "Rechupe", "supercategory": "defects"},
]


@pytest.fixture
def quirky_root(tmp_path: Path) -> Path:
    """One product whose splits number categories differently and hold every quirk the converter handles."""
    root = tmp_path / "vision"
    write_split(
        root, "Casting", "train",
        images=[
            {"file_name": "a.png", "size": (80, 60), "json_size": (100, 100)},  # size mismatch
            {"file_name": "b.jpg", "size": (100, 50)},
            {"file_name": "c.jpg", "size": (40, 40)},  # no annotations
        ],
        categories=ROBOFLOW_CATEGORIES,
        annotations=[
            ann(1, 0, 1, bbox=[8, 6, 16, 12]),
            ann(2, 1, 2, bbox=[], polygon=[10, 10, 30, 10, 30, 40, 10, 40]),  # polygon only
            ann(3, 1, 1, bbox=[90, 40, 30, 30]),  # sticks out: clamped
            ann(4, 1, 1, bbox=[200, 10, 5, 5]),  # outside the image: degenerate
            ann(5, 1, 9, bbox=[1, 1, 5, 5]),  # undeclared category
        ],
    )
    write_split(
        root, "Casting", "val",
        images=[{"file_name": "d.png", "size": (50, 50)}],
        categories=[{"id": 0, "name": "defects", "supercategory": "none"},
                    {"id": 1, "name": "rechupe", "supercategory": "defects"},
                    {"id": 2, "name": "Inclusoes", "supercategory": "defects"}],
        annotations=[ann(1, 0, 1, bbox=[0, 0, 10, 10]), ann(2, 0, 2, polygon=[20, 20, 30, 20, 30, 30])],
    )
    return root


def labels(dataset: PreparedDataset, split: str, name: str) -> list[list[float]]:
    text = (dataset.root / "labels" / split / f"{name}.txt").read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


# ---------------------------------------------------------------- the synthetic session dataset


def test_layout_follows_the_contract(prepared_dataset: PreparedDataset, synth_vision_root: Path) -> None:
    root = prepared_dataset.root
    spec = yaml.safe_load(prepared_dataset.dataset_yaml.read_text())
    assert spec["path"] == str(root)
    assert (spec["train"], spec["val"]) == ("images/train", "images/val")
    assert spec["nc"] == len(prepared_dataset.names) == 9
    assert spec["names"] == dict(enumerate(prepared_dataset.names))
    assert prepared_dataset.names == sorted(prepared_dataset.names)
    assert "casting/inclusoes" in prepared_dataset.names and "pcb_1/spurious_copper" in prepared_dataset.names
    assert is_prepared_dataset(root)
    for split in ("train", "val"):
        images = sorted((root / "images" / split).iterdir())
        assert len(images) == (30 if split == "val" else 60)
        assert {p.stem for p in images} == {p.stem for p in (root / "labels" / split).iterdir()}
    # the real extension is kept and the bytes are the source's
    png = root / "images" / "train" / "Casting_train_0000.png"
    jpg = root / "images" / "train" / "PCB_1_train_0000.jpg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    assert jpg.read_bytes() == (synth_vision_root / "PCB_1" / "train" / "train_0000.jpg").read_bytes()
    # nothing from the unlabeled inference split
    assert not any("inference" in p.name for p in root.rglob("*"))
    assert not list(root.glob(".*"))


def test_every_annotation_becomes_a_label_including_polygon_only(
    prepared_dataset: PreparedDataset, synth_vision_root: Path
) -> None:
    total = polygon_only = 0
    for path in synth_vision_root.glob("*/*/_annotations.coco.json"):
        if path.parent.name == "inference":
            assert json.loads(path.read_text())["annotations"] == []
            continue
        anns = json.loads(path.read_text())["annotations"]
        total += len(anns)
        polygon_only += sum(1 for a in anns if not a.get("bbox"))
    card = prepared_dataset.data_card
    assert polygon_only > 0
    assert card["totals"]["instances"] == total
    lines = sum(len(p.read_text().splitlines()) for p in prepared_dataset.root.glob("labels/*/*.txt"))
    assert lines == total
    assert card["warnings"] == [] and card["warning_counts"] == {}


def test_roboflow_category_0_is_not_a_class(prepared_dataset: PreparedDataset) -> None:
    assert not any(name.endswith(("/defects", "/pcb_1", "/casting", "/screw")) for name in prepared_dataset.names)
    class_map = json.loads(prepared_dataset.class_map_path.read_text())
    inclusoes = class_map["classes"][0]
    assert inclusoes == {"id": 0, "name": "casting/inclusoes", "product": "Casting", "source_name": "Inclusoes",
                         "source_category_ids": {"train": 1, "val": 1}}
    assert class_map["names"] == prepared_dataset.names


def test_images_without_objects_get_an_empty_label_file(prepared_dataset: PreparedDataset) -> None:
    card = prepared_dataset.data_card
    empty = [p for p in prepared_dataset.root.glob("labels/*/*.txt") if p.read_text() == ""]
    assert len(empty) == card["totals"]["images_without_objects"] > 0
    assert card["per_product"]["Screw"]["train"]["images_without_objects"] == 3
    assert card["per_product"]["Screw"]["inference_images"] == 10


def test_data_card_counts_add_up(prepared_dataset: PreparedDataset) -> None:
    card = prepared_dataset.data_card
    assert card["totals"]["images"] == 90
    assert sum(c["instances"]["total"] for c in card["classes"]) == card["totals"]["instances"]
    for split in ("train", "val"):
        assert sum(p[split]["images"] for p in card["per_product"].values()) == card["splits"][split]["images"]
        assert sum(c["instances"][split] for c in card["classes"]) == card["splits"][split]["instances"]
    assert PreparedDataset.load(prepared_dataset.root) == prepared_dataset


def test_same_input_gives_the_same_ids_and_labels(
    prepared_dataset: PreparedDataset, synth_vision_root: Path, tmp_path: Path
) -> None:
    again = prepare(synth_vision_root, tmp_path / "again")
    assert again.class_map_path.read_bytes() == prepared_dataset.class_map_path.read_bytes()
    for label in prepared_dataset.root.glob("labels/*/*.txt"):
        assert (again.root / label.relative_to(prepared_dataset.root)).read_text() == label.read_text()


def test_products_filter_is_case_insensitive(synth_vision_root: Path, tmp_path: Path) -> None:
    dataset = prepare(synth_vision_root, tmp_path / "two", products=["screw", "CASTING"])
    assert dataset.names == ["casting/inclusoes", "casting/rechupe", "screw/defect"]
    assert dataset.data_card["products"] == ["Casting", "Screw"]
    assert {p.name.split("_")[0] for p in dataset.root.glob("images/*/*")} == {"Casting", "Screw"}
    assert {line.split()[0] for p in dataset.root.glob("labels/*/Screw_*.txt") for line in p.read_text().splitlines()} \
        == {"2"}


# ---------------------------------------------------------------- quirks, on a hand-made tree


def test_quirks_are_handled_and_reported(quirky_root: Path, tmp_path: Path) -> None:
    progress: list[str] = []
    dataset = prepare(quirky_root, tmp_path / "out", progress=progress.append)
    assert dataset.names == ["casting/inclusoes", "casting/rechupe"]
    # size mismatch: normalised by the real 80x60 size
    assert labels(dataset, "train", "Casting_a") == [[0, 0.2, 0.2, 0.2, 0.2]]
    # polygon only, clamped box kept, degenerate and undeclared-category boxes dropped
    assert labels(dataset, "train", "Casting_b") == [[1, 0.2, 0.5, 0.2, 0.6], [0, 0.95, 0.9, 0.1, 0.2]]
    assert labels(dataset, "train", "Casting_c") == []
    # val numbers its categories the other way round: merged by name
    assert labels(dataset, "val", "Casting_d") == [[1, 0.1, 0.1, 0.2, 0.2], [0, 0.5, 0.5, 0.2, 0.2]]
    assert sorted(p.name for p in (dataset.root / "images" / "train").iterdir()) == [
        "Casting_a.png", "Casting_b.jpg", "Casting_c.jpg"]
    card = dataset.data_card
    assert card["warning_counts"] == {"clamped_box": 1, "degenerate_box": 1, "size_mismatch": 1,
                                      "unknown_category": 1}
    mismatch = next(w for w in card["warnings"] if w["kind"] == "size_mismatch")
    assert mismatch["path"] == "a.png" and "80x60" in mismatch["message"]
    assert json.loads(dataset.class_map_path.read_text())["classes"][1]["source_category_ids"] == {"train": 2, "val": 1}
    assert any("4 warnings" in line for line in progress)


def test_category_0_with_annotations_is_a_class(tmp_path: Path) -> None:
    root = tmp_path / "vision"
    cats = [{"id": 0, "name": "0", "supercategory": "none"}]
    for split in ("train", "val"):
        write_split(root, "Capacitor", split, [{"file_name": "x.jpg", "size": (32, 32)}], cats,
                    [ann(1, 0, 0, bbox=[4, 4, 8, 8])])
    assert prepare(root, tmp_path / "out").names == ["capacitor/0"]


# ---------------------------------------------------------------- the output folder


def test_a_previous_prepared_dataset_is_replaced(quirky_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(quirky_root, out)
    (out / "images" / "train" / "stale.png").write_bytes(b"old")
    prepare(quirky_root, out)
    assert not (out / "images" / "train" / "stale.png").exists()
    assert leftovers(out) == ["out"]


def test_an_empty_existing_folder_is_used(quirky_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert is_prepared_dataset(prepare(quirky_root, out).root)


def test_a_foreign_folder_is_never_overwritten(quirky_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match=f"output {out} is a non-empty directory"):
        prepare(quirky_root, out)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert leftovers(out) == ["out"]


# ---------------------------------------------------------------- errors: clear, and nothing written


def _broken_json(root: Path) -> None:
    (root / "Casting" / "val" / "_annotations.coco.json").write_text('{"images": [')


def _missing_image(root: Path) -> None:
    (root / "Casting" / "train" / "b.jpg").unlink()


def _missing_val(root: Path) -> None:
    shutil.rmtree(root / "Casting" / "val")


def _no_products(root: Path) -> None:
    shutil.rmtree(root / "Casting")
    (root / "notes").mkdir()


@pytest.mark.parametrize(
    ("breakage", "products", "message"),
    [
        (None, ["Casting", "Wood"], r"unknown product 'Wood' under .*vision; available: Casting"),
        (_broken_json, None, r"annotation file .*Casting/val/_annotations.coco.json is not valid COCO JSON"),
        (_missing_image, None, r"image file .*Casting/train/b.jpg listed in .*train/_annotations.coco.json is missing"),
        (_missing_val, None, r"product Casting: .*Casting/val/_annotations.coco.json is missing"),
        (_no_products, None, r"no products found under .*vision"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    quirky_root: Path, tmp_path: Path, breakage: Any, products: list[str] | None, message: str
) -> None:
    if breakage:
        breakage(quirky_root)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message):
        prepare(quirky_root, out, products=products)
    assert leftovers(out) == []


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"source root {tmp_path / 'nope'} does not exist"):
        prepare(tmp_path / "nope", tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_a_failed_run_keeps_the_previous_dataset(quirky_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = prepare(quirky_root, out)
    _missing_image(quirky_root)
    with pytest.raises(DataError, match=r"b\.jpg"):
        prepare(quirky_root, out)
    assert PreparedDataset.load(out) == before
    assert leftovers(out) == ["out"]


# ---------------------------------------------------------------- ultralytics reads it as is


def test_ultralytics_accepts_the_dataset(prepared_dataset: PreparedDataset) -> None:
    from visionops import offline

    offline.configure()
    from ultralytics.data.utils import check_det_dataset, img2label_paths, verify_image_label

    data = check_det_dataset(str(prepared_dataset.dataset_yaml))
    assert data["nc"] == len(prepared_dataset.names)
    assert list(data["names"].values()) == prepared_dataset.names
    images = sorted(str(p) for p in Path(data["val"]).iterdir())
    for image, label in zip(images, img2label_paths(images), strict=True):
        result = verify_image_label((image, label, "", False, data["nc"], 0, 0, False))
        corrupt, message = result[8], result[9]
        assert corrupt == 0, message


def test_same_stem_different_extension_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "vision"
    cats = [{"id": 0, "name": "screw", "supercategory": "none"}, {"id": 1, "name": "defect", "supercategory": "screw"}]
    same_stem = [{"file_name": "a.png", "size": (20, 20)}, {"file_name": "a.jpg", "size": (20, 20)}]
    write_split(root, "Screw", "train", same_stem, cats, [ann(1, 0, 1, bbox=[0, 0, 10, 10])])
    val = write_split(root, "Screw", "val", [{"file_name": "v.png", "size": (20, 20)}], cats,
                      [ann(1, 0, 1, bbox=[5, 5, 5, 5])])
    coco = json.loads(val.read_text())
    coco["images"].append({**coco["images"][0], "id": 7})
    val.write_text(json.dumps(coco))
    dataset = prepare(root, tmp_path / "out")
    assert sorted(p.name for p in (dataset.root / "images" / "train").iterdir()) == ["Screw_a.jpg", "Screw_a_2.png"]
    assert labels(dataset, "train", "Screw_a_2") == [[0, 0.25, 0.25, 0.5, 0.5]]
    assert labels(dataset, "train", "Screw_a") == []
    assert dataset.data_card["warning_counts"] == {"duplicate_image": 1, "renamed_image": 1}
