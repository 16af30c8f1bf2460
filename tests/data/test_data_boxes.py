"""Pure unit tests: COCO box/polygon -> YOLO box conversion, clamping, and the class map."""

from __future__ import annotations

import pytest
from pycocotools import mask as mask_utils

from visionops.data.boxes import (
    bbox_values,
    clamp_xywh,
    format_label_line,
    polygon_extent,
    rle_object,
    source_box,
    to_yolo,
)
from visionops.data.classmap import ClassMap, build_class_map, global_name, is_roboflow_parent, load_class_map
from visionops.data.errors import DataError
from visionops.data.vision import Category


def test_to_yolo_normalises_centre_and_size() -> None:
    assert to_yolo([10, 20, 30, 40], 100, 200) == pytest.approx((0.25, 0.2, 0.3, 0.2))


def test_to_yolo_clamps_to_the_image() -> None:
    # 20 px sticks out left, 10 px out at the bottom
    assert to_yolo([-20, 90, 60, 20], 100, 100) == pytest.approx((0.2, 0.95, 0.4, 0.1))
    assert clamp_xywh([-5, -5, 200, 200], 100, 50) == (0, 0, 100, 50)


@pytest.mark.parametrize("box", [[0, 0, 0, 10], [10, 10, 0.5, 5], [120, 10, 10, 10], [-30, -30, 20, 20]])
def test_to_yolo_drops_degenerate_boxes(box: list[float]) -> None:
    assert to_yolo(box, 100, 100) is None


def test_to_yolo_rejects_a_bad_image_size() -> None:
    with pytest.raises(ValueError, match="0x10"):
        to_yolo([0, 0, 1, 1], 0, 10)


def test_polygon_extent_of_several_polygons_ignores_a_dangling_coordinate() -> None:
    assert polygon_extent([[10, 10, 20, 15, 12, 30, 99], [40, 5, 41, 6]]) == [10, 5, 31, 25]
    assert polygon_extent([]) is None
    assert polygon_extent(None) is None


def test_polygon_extent_of_rle() -> None:
    import numpy as np

    mask = np.zeros((20, 30), dtype=np.uint8, order="F")
    mask[5:9, 10:17] = 1
    rle = mask_utils.encode(mask)
    assert polygon_extent(rle) == [10, 5, 7, 4]
    # the same mask as uncompressed RLE (column-major runs, starting with zeros)
    uncompressed = {"size": [20, 30], "counts": [10 * 20 + 5, *[4, 16] * 6, 4, 11 + 13 * 20]}
    assert polygon_extent(uncompressed) == [10, 5, 7, 4]


def _runs(mask) -> list[int]:
    """Uncompressed COCO runs of a mask: column-major, alternating zeros and ones, starting with zeros."""
    import numpy as np

    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0, *runs] if flat[0] else runs


@pytest.mark.parametrize("seed", range(5))
def test_compressed_rle_is_read_as_pycocotools_writes_it(seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    mask = np.asfortranarray((rng.random((37, 53)) < rng.uniform(0.05, 0.95)).astype(np.uint8))
    rle = mask_utils.encode(mask)
    as_list = {"size": [37, 53], "counts": _runs(mask)}
    assert polygon_extent(rle) == polygon_extent(as_list) == [float(v) for v in mask_utils.toBbox(rle)]
    assert rle_object({"size": [37, 53], "counts": rle["counts"].decode()})["counts"] == rle["counts"].decode()
    assert mask_utils.decode(rle_object(as_list)).tolist() == mask.tolist()


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([1, 2, 3], "four finite numbers"),
        ([1, float("nan"), 3, 4], "four finite numbers"),
        ([1, 2, 3, False], "four finite numbers"),
        ([1, 2, -3, 4], "negative width or height"),
    ],
)
def test_bbox_values_refuses_what_is_not_four_finite_numbers(bbox: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bbox_values(bbox)
    assert bbox_values((1, 2.5, 0, 4)) == [1.0, 2.5, 0.0, 4.0]


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ({"bbox": [1, 2, 3, 4], "segmentation": [[0, 0, 50, 50]]}, ([1, 2, 3, 4], "bbox")),
        ({"bbox": [], "segmentation": [[0, 0, 50, 0, 50, 40]]}, ([0, 0, 50, 40], "polygon")),
        ({"segmentation": [[5, 5, 9, 5, 9, 8]]}, ([5, 5, 4, 3], "polygon")),
        ({"bbox": [1, 2, 0, 4], "segmentation": [[5, 5, 9, 5, 9, 8]]}, ([5, 5, 4, 3], "polygon")),
        ({"bbox": [], "segmentation": []}, (None, "none")),
    ],
)
def test_source_box_prefers_bbox_then_polygon(annotation: dict, expected: tuple) -> None:
    assert source_box(annotation) == expected


def test_format_label_line() -> None:
    assert format_label_line(3, (0.5, 0.25, 0.1, 1.0)) == "3 0.500000 0.250000 0.100000 1.000000"


def test_global_name_keeps_the_product() -> None:
    assert global_name("Casting", " Inclusoes ") == "casting/inclusoes"
    assert global_name("Lens", "Flash Particle") == "lens/flash particle"


def _cats(*items: tuple[int, str, str]) -> dict[int, Category]:
    return {cid: Category(cid, name, sup) for cid, name, sup in items}


def test_roboflow_parent_is_skipped_only_without_annotations() -> None:
    cats = _cats((0, "defects", "none"), (1, "Inclusoes", "defects"))
    assert is_roboflow_parent(cats[0], cats.values(), annotated_ids={1})
    assert not is_roboflow_parent(cats[0], cats.values(), annotated_ids={0, 1})
    assert not is_roboflow_parent(cats[1], cats.values(), annotated_ids=set())
    # a parent that is not id 0 but named as the others' supercategory
    cats = _cats((3, "casting", "none"), (1, "Inclusoes", "casting"))
    assert is_roboflow_parent(cats[3], cats.values(), annotated_ids={1})


def test_class_map_merges_by_name_not_by_category_id() -> None:
    categories = {
        "Casting": {
            "train": _cats((0, "defects", "none"), (1, "Inclusoes", "defects"), (2, "Rechupe", "defects")),
            "val": _cats((0, "defects", "none"), (1, "rechupe", "defects"), (2, "INCLUSOES", "defects")),
        },
        "Screw": {"train": _cats((0, "screw", "none"), (1, "defect", "screw")),
                  "val": _cats((0, "screw", "none"), (1, "defect", "screw"))},
        "Capacitor": {"train": _cats((0, "caps", "none"), (1, "0", "caps")),
                      "val": _cats((0, "caps", "none"), (1, "0", "caps"))},
    }
    annotated = {"Casting": {"inclusoes", "rechupe"}, "Screw": {"defect"}, "Capacitor": {"0"}}
    class_map = build_class_map(categories, annotated)
    assert class_map.names == ["capacitor/0", "casting/inclusoes", "casting/rechupe", "screw/defect"]
    inclusoes = class_map.classes[1]
    assert (inclusoes.product, inclusoes.source_name) == ("Casting", "Inclusoes")
    assert inclusoes.source_category_ids == {"train": 1, "val": 2}
    assert class_map.id_of("Casting", "rechupe") == 2
    # same input in another order -> same ids
    shuffled = {p: dict(reversed(categories[p].items())) for p in reversed(list(categories))}
    assert build_class_map(shuffled, annotated) == class_map


def test_class_map_keeps_an_unannotated_real_class_and_fails_without_classes() -> None:
    categories = {"Wood": {"train": _cats((0, "wood", "none"), (1, "impurities", "wood"), (2, "pits", "wood"))}}
    assert build_class_map(categories, {"Wood": {"pits"}}).names == ["wood/impurities", "wood/pits"]
    with pytest.raises(DataError, match="no classes found in products Wood"):
        build_class_map({"Wood": {"train": _cats((0, "wood", "none"))}}, {"Wood": set()})


def test_class_map_round_trips_through_json(tmp_path) -> None:
    categories = {"Screw": {"train": _cats((0, "screw", "none"), (1, "defect", "screw"))}}
    class_map = build_class_map(categories, {"Screw": {"defect"}})
    loaded = load_class_map(class_map.save(tmp_path / "class_map.json"))
    assert isinstance(loaded, ClassMap)
    assert loaded == class_map
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"bad\.json"):
        load_class_map(tmp_path / "bad.json")
