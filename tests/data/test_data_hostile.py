"""``visionops data prepare`` on malformed VISION trees: one exact error line, exit 1, nothing written.

Every case starts from a valid one-product tree that was prepared once into ``out``; then one thing
in it is broken and ``prepare`` runs again, into ``out`` (which must keep the previous dataset,
byte for byte) and into a fresh nested folder (which must not appear, nor its parents).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.datasets import ann, leftovers, write_split
from PIL import Image

from visionops.cli import main
from visionops.data.prepare import PreparedDataset

CATEGORIES = [{"id": 0, "name": "defects", "supercategory": "none"},
              {"id": 1, "name": "Inclusoes", "supercategory": "defects"}]
SIZE = (40, 30)  # width, height of every image
INSIDE = "must stay inside the split folder (no absolute path, no '..')"
NOT_FOUR = "bbox must be four finite numbers [x, y, width, height], got"


def _tree(root: Path) -> Path:
    """A valid tree: Casting with one annotated image per split."""
    write_split(root, "Casting", "train", [{"file_name": "a.png", "size": SIZE}], CATEGORIES,
                [ann(1, 0, 1, bbox=[4, 4, 8, 8])])
    write_split(root, "Casting", "val", [{"file_name": "v.png", "size": SIZE}], CATEGORIES,
                [ann(1, 0, 1, bbox=[2, 2, 6, 6])])
    return root


def _train_json(root: Path) -> Path:
    return root / "Casting" / "train" / "_annotations.coco.json"


def _edit(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = _train_json(root)
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))  # NaN and Infinity are written as JSON extensions, as some exporters do


def _annotation(**fields: Any) -> Callable[[Path], None]:
    """Breakage: set ``fields`` on the train annotation 1 (image ``a.png``)."""
    return lambda root: _edit(root, lambda coco: coco["annotations"][0].update(fields))


def _file_name(name: str) -> Callable[[Path], None]:
    """Breakage: the train image 0 is listed as ``name``."""
    return lambda root: _edit(root, lambda coco: coco["images"][0].update(file_name=name))


def _outside_image(root: Path) -> Path:
    """A real image beside the source tree (what a hostile ``file_name`` would pull in)."""
    path = root.parent / "outside.png"
    Image.new("RGB", SIZE, (1, 2, 3)).save(path)
    return path


def _escape(name: str) -> Callable[[Path], None]:
    def breakage(root: Path) -> None:
        _outside_image(root)
        _file_name(name)(root)

    return breakage


def _symlink_out(root: Path) -> None:
    (root / "Casting" / "train" / "link.png").symlink_to(_outside_image(root))
    _file_name("link.png")(root)


def _symlinked_folder_out(root: Path) -> None:
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", SIZE).save(elsewhere / "x.png")
    (root / "Casting" / "train" / "sub").symlink_to(elsewhere, target_is_directory=True)
    _file_name("sub/x.png")(root)


def _symlink_to_other_split(root: Path) -> None:
    (root / "Casting" / "train" / "peek.png").symlink_to(Path("..") / "val" / "v.png")
    _file_name("peek.png")(root)


def _rle(counts: Any, size: Any = (30, 40)) -> dict[str, Any]:
    return {"size": list(size) if isinstance(size, tuple) else size, "counts": counts}


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    # bbox: four finite numbers, width and height not negative
    ("bbox-null-value", _annotation(bbox=[4, None, 8, 8]), f"{{ann}}: {NOT_FOUR} [4, None, 8, 8]"),
    ("bbox-null", _annotation(bbox=None), f"{{ann}}: {NOT_FOUR} None"),
    ("bbox-nan", _annotation(bbox=[4, 4, float("nan"), 8]), f"{{ann}}: {NOT_FOUR} [4, 4, nan, 8]"),
    ("bbox-inf", _annotation(bbox=[4, 4, 8, float("inf")]), f"{{ann}}: {NOT_FOUR} [4, 4, 8, inf]"),
    ("bbox-minus-inf", _annotation(bbox=[float("-inf"), 4, 8, 8]), f"{{ann}}: {NOT_FOUR} [-inf, 4, 8, 8]"),
    ("bbox-huge-int", _annotation(bbox=[4, 4, 10**400, 8]),
     f"{{ann}}: {NOT_FOUR} [4, 4, 1{'0' * 17}...{'0' * 19}, 8]"),  # reprlib shortens it
    ("bbox-three", _annotation(bbox=[4, 4, 8]), f"{{ann}}: {NOT_FOUR} [4, 4, 8]"),
    ("bbox-five", _annotation(bbox=[4, 4, 8, 8, 1]), f"{{ann}}: {NOT_FOUR} [4, 4, 8, 8, 1]"),
    ("bbox-string-value", _annotation(bbox=["4", 4, 8, 8]), f"{{ann}}: {NOT_FOUR} ['4', 4, 8, 8]"),
    ("bbox-bool-value", _annotation(bbox=[True, 4, 8, 8]), f"{{ann}}: {NOT_FOUR} [True, 4, 8, 8]"),
    ("bbox-string", _annotation(bbox="4,4,8,8"), f"{{ann}}: {NOT_FOUR} '4,4,8,8'"),
    ("bbox-object", _annotation(bbox={"x": 4}), f"{{ann}}: {NOT_FOUR} {{{{'x': 4}}}}"),
    ("bbox-negative-width", _annotation(bbox=[4, 4, -8, 8]),
     "{ann}: bbox has a negative width or height: [4, 4, -8, 8]"),
    ("bbox-negative-height", _annotation(bbox=[4, 4, 8, -1e-3]),
     "{ann}: bbox has a negative width or height: [4, 4, 8, -0.001]"),
    # segmentation: RLE must decode, polygons must be numbers (checked even when the bbox is fine)
    ("rle-bad-alphabet", _annotation(segmentation=_rle("0~~")),
     "{ann}: RLE counts hold '~', outside the compressed RLE alphabet '0'..'o'"),
    ("rle-cut-short", _annotation(segmentation=_rle("0P")), "{ann}: RLE counts end in the middle of a run"),
    ("rle-endless-run", _annotation(segmentation=_rle("o" * 100_000)),
     "{ann}: RLE counts hold a negative or out-of-range run"),
    ("rle-wrong-total", _annotation(segmentation=_rle([100, 20])),
     "{ann}: RLE counts cover 120 pixels, not the 30x40 = 1200 of its size"),
    ("rle-string-wrong-total", _annotation(segmentation=_rle("d1")),
     "{ann}: RLE counts cover 52 pixels, not the 30x40 = 1200 of its size"),
    ("rle-negative-run", _annotation(segmentation=_rle([1300, -100])),
     "{ann}: RLE counts hold a negative or out-of-range run"),
    ("rle-no-counts", _annotation(segmentation={"size": [30, 40]}),
     "{ann}: RLE counts must be a list of integers or a compressed string, got None"),
    ("rle-float-counts", _annotation(segmentation=_rle([600.0, 600.0])),
     "{ann}: RLE counts must be a list of integers or a compressed string, got [600.0, 600.0]"),
    ("rle-short-size", _annotation(segmentation=_rle([1200], size=[30])),
     "{ann}: RLE size must be [height, width] with positive integers, got [30]"),
    ("rle-zero-size", _annotation(segmentation=_rle([], size=[0, 40])),
     "{ann}: RLE size must be [height, width] with positive integers, got [0, 40]"),
    ("polygon-null", _annotation(segmentation=[[1, 1, None, 5, 9, 9]]),
     "{ann}: segmentation polygon 0 holds a non-finite or non-numeric coordinate: [1, 1, None, 5, 9, 9]"),
    ("polygon-nan", _annotation(bbox=[], segmentation=[[1, 1, 5, float("nan"), 9, 9]]),
     "{ann}: segmentation polygon 0 holds a non-finite or non-numeric coordinate: [1, 1, 5, nan, 9, 9]"),
    ("polygon-string", _annotation(segmentation=["1,1,5,5,9,9"]),
     "{ann}: segmentation polygon 0 must be a list of numbers, got '1,1,5,5,9,9'"),
    ("segmentation-number", _annotation(segmentation=7),
     "{ann}: segmentation must be a list of polygons or an RLE object, got 7"),
    ("category-id-list", _annotation(category_id=[1]),
     "annotation file {json} is not valid COCO JSON: unhashable type: 'list'"),
    # file_name: stays inside its split folder
    ("dotdot", _escape("../../../outside.png"), f"{{img}} '../../../outside.png' {INSIDE}"),
    ("dotdot-inside-out", _escape("x/../../../../outside.png"), f"{{img}} 'x/../../../../outside.png' {INSIDE}"),
    ("dotdot-backslash", _escape("..\\..\\..\\outside.png"), f"{{img}} '..\\\\..\\\\..\\\\outside.png' {INSIDE}"),
    ("absolute", lambda root: _file_name(str(_outside_image(root)))(root), f"{{img}} '{{tmp}}/outside.png' {INSIDE}"),
    ("drive-letter", _file_name("C:\\outside.png"), f"{{img}} 'C:\\\\outside.png' {INSIDE}"),
    ("symlink-out", _symlink_out,
     "{img} 'link.png' resolves to {tmp}/outside.png, outside the split folder {split}"),
    ("symlinked-folder-out", _symlinked_folder_out,
     "{img} 'sub/x.png' resolves to {tmp}/elsewhere/x.png, outside the split folder {split}"),
    ("symlink-to-other-split", _symlink_to_other_split,
     "{img} 'peek.png' resolves to {root}/Casting/val/v.png, outside the split folder {split}"),
    # one line even when the file name holds a line break
    ("newline-in-name", _file_name("a\nb.png"),
     "image file {json.parent}/a\\nb.png listed in {json} is missing"),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _prepare(source: Path, out: Path) -> int:
    return main(["data", "prepare", "--source", str(source), "--out", str(out)])


@pytest.mark.parametrize(("breakage", "message"), [pytest.param(b, m, id=i) for i, b, m in CASES])
def test_malformed_dataset_is_refused_with_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage: Callable[[Path], None], message: str
) -> None:
    root = _tree(tmp_path / "vision")
    out = tmp_path / "out"
    assert _prepare(root, out) == 0
    before = _snapshot(out)
    capsys.readouterr()

    breakage(root)
    split = (root / "Casting" / "train").resolve()
    expected = "error: " + message.format(
        ann=f"annotation file {_train_json(root)}: annotation 1 of image 'a.png'",
        img=f"annotation file {_train_json(root)}: image 0 file_name",
        json=_train_json(root), split=split, root=root.resolve(), tmp=tmp_path.resolve(),
    ) + "\n"
    assert _prepare(root, out) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", expected)
    assert _snapshot(out) == before  # the previous dataset is untouched
    assert leftovers(out) == ["out"]  # and no temp folder is left beside it

    fresh = tmp_path / "new" / "deeper" / "out"
    assert _prepare(root, fresh) == 1
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "new").exists()


def _accepted(tmp_path: Path, breakage: Callable[[Path], None]) -> PreparedDataset:
    root = _tree(tmp_path / "vision")
    breakage(root)
    assert _prepare(root, tmp_path / "out") == 0
    return PreparedDataset.load(tmp_path / "out")


def _labels(dataset: PreparedDataset) -> list[str]:
    return (dataset.root / "labels" / "train" / "Casting_a.txt").read_text().splitlines()


@pytest.mark.parametrize(
    ("breakage", "label"),
    [
        pytest.param(_annotation(bbox=[], segmentation=[[4, 4, 12, 4, 12, 12]]),
                     "0 0.200000 0.266667 0.200000 0.266667", id="empty-bbox-uses-polygon"),
        pytest.param(_annotation(bbox=[4, 4, 0, 8], segmentation=_rle([4 * 30 + 4, 4, 26, 4, 1042])),
                     "0 0.125000 0.200000 0.050000 0.133333", id="zero-width-bbox-uses-rle"),
    ],
)
def test_documented_fallbacks_still_prepare(tmp_path: Path, breakage: Callable[[Path], None], label: str) -> None:
    assert _labels(_accepted(tmp_path, breakage)) == [label]


def test_a_symlink_inside_the_split_is_followed(tmp_path: Path) -> None:
    def alias(root: Path) -> None:
        os.symlink("a.png", root / "Casting" / "train" / "alias.png")
        _file_name("alias.png")(root)

    dataset = _accepted(tmp_path, alias)
    copied = dataset.root / "images" / "train" / "Casting_alias.png"
    original = tmp_path / "vision" / "Casting" / "train" / "a.png"
    assert not copied.is_symlink() and copied.read_bytes() == original.read_bytes()
