"""``visionops data samples``: pure helpers of the annotated sample grid, and one real grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from visionops.cli import main
from visionops.data.errors import DataError
from visionops.data.prepare import PreparedDataset
from visionops.data.samples import (
    CAPTION_PX,
    LabeledBox,
    LabeledImage,
    class_colours,
    fit_size,
    grid_shape,
    parse_label_lines,
    pick_samples,
    resolve_classes,
    sample_grid,
    text_colour,
    yolo_to_xyxy,
)

NAMES = ["casting/inclusoes", "casting/rechupe", "pcb_1/short", "ring/defect", "screw/defect"]


def test_parse_label_lines_reads_boxes_and_skips_blank_lines() -> None:
    boxes = parse_label_lines("0 0.5 0.5 0.2 0.4\n\n4 0.1 0.2 0.3 0.4\n", nc=5)
    assert boxes == [LabeledBox(0, (0.5, 0.5, 0.2, 0.4)), LabeledBox(4, (0.1, 0.2, 0.3, 0.4))]
    assert parse_label_lines("", nc=5) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2\n", "x.txt line 1: expected 'class cx cy w h', got '0 0.5 0.5 0.2'"),
        ("0 0.5 0.5 0.2 0.2\nzero 1 1 1 1\n", "x.txt line 2: expected 'class cx cy w h'"),
        ("5 0.5 0.5 0.2 0.2\n", "x.txt line 1: class id 5 is outside 0..4"),
    ],
)
def test_parse_label_lines_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_label_lines(text, nc=5, where="x.txt")


def test_yolo_to_xyxy() -> None:
    assert yolo_to_xyxy((0.5, 0.5, 0.5, 0.25), 200, 100) == (50.0, 37.5, 150.0, 62.5)


def test_resolve_classes_accepts_full_and_bare_names_in_any_case() -> None:
    assert resolve_classes(["Casting/Rechupe", "short", "pcb_1/short"], NAMES) == [1, 2]
    assert resolve_classes([], NAMES) == []


def test_resolve_classes_unknown_lists_the_available_names() -> None:
    with pytest.raises(DataError, match=r"unknown class 'crack'; available: casting/inclusoes, .*screw/defect"):
        resolve_classes(["crack"], NAMES)


def test_resolve_classes_refuses_an_ambiguous_bare_name() -> None:
    with pytest.raises(DataError, match="class 'defect' is ambiguous; use one of: ring/defect, screw/defect"):
        resolve_classes(["defect"], NAMES)


def _images() -> list[LabeledImage]:
    return [
        LabeledImage(Path(f"img_{i:02d}.png"), tuple(LabeledBox(i % 3, (0.5, 0.5, 0.1, 0.1)) for _ in range(i % 2 + 1)))
        for i in range(12)
    ]


def test_pick_samples_filters_by_class_and_is_reproducible() -> None:
    images = _images()
    picked = pick_samples(images, [2], count=3, seed=7)
    assert len(picked) == 3
    assert all(2 in image.class_ids for image in picked)
    assert [p.path.name for p in picked] == sorted(p.path.name for p in picked)
    assert picked == pick_samples(images, [2], count=3, seed=7)
    assert len(pick_samples(images, [], count=50, seed=0)) == 12
    assert pick_samples(images, [4], count=3, seed=0) == []
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        pick_samples(images, [], count=0, seed=0)


def test_class_colours_are_distinct_stable_and_valid() -> None:
    colours = class_colours(44)
    assert len(set(colours)) == 44
    assert class_colours(5) == colours[:5]
    assert all(0 <= channel <= 255 for colour in colours for channel in colour)


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (2, (1, 2)), (4, (2, 2)), (5, (2, 3)), (16, (4, 4)),
                                          (17, (4, 5))])
def test_grid_shape(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape


def test_grid_shape_needs_a_tile() -> None:
    with pytest.raises(ValueError, match="at least one tile, got 0"):
        grid_shape(0)


def test_fit_size_and_text_colour() -> None:
    assert fit_size(400, 200, 100) == (100, 50)
    assert fit_size(50, 100, 200) == (100, 200)
    assert text_colour((255, 255, 0)) == (0, 0, 0)
    assert text_colour((20, 20, 200)) == (255, 255, 255)
    with pytest.raises(ValueError, match="sizes must be positive"):
        fit_size(0, 10, 10)


def test_sample_grid_draws_the_chosen_class(prepared_dataset: PreparedDataset, tmp_path: Path) -> None:
    shown = sample_grid(prepared_dataset.root, tmp_path / "grid.png", classes=["screw/defect"], count=4, tile=128)
    assert len(shown["images"]) == 4
    assert all(name.startswith("Screw_") for name in shown["images"])
    assert shown["classes"] == ["screw/defect"] and shown["objects"] >= 4
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.format == "PNG"
        assert grid.width == 2 * 128 and grid.height > 2 * (128 + CAPTION_PX)
        first_tile = grid.convert("RGB").crop((0, 0, 128, 128))
    colour = class_colours(len(prepared_dataset.names))[prepared_dataset.names.index("screw/defect")]
    assert colour in {c for _, c in first_tile.getcolors(128 * 128)}


def test_samples_command(prepared_dataset: PreparedDataset, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "grid.png"
    assert main(["data", "samples", "--dataset", str(prepared_dataset.root), "--out", str(out), "--count", "5",
                 "--seed", "1", "--split", "train"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and out.is_file()
    assert "5 of 60 train images" in captured.err

    assert main(["data", "samples", "--dataset", str(prepared_dataset.root), "--out", str(out), "--class", "bolt"]) == 1
    assert "unknown class 'bolt'; available: casting/inclusoes" in capsys.readouterr().err

    assert main(["data", "samples", "--dataset", str(tmp_path), "--out", str(out)]) == 1
    assert "is not a prepared dataset" in capsys.readouterr().err
