"""Steps 1 and 2, Data and Data card: the VISION trees of the dataset volume, their products, splits, problems and
class distribution, and sample images with their boxes drawn."""

from __future__ import annotations

import random
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from visionops_console import charts
from visionops_console.core import Console
from visionops_console.datasets import LIGHTBOX_SIDE, TILE_SIDE

SAMPLE_COUNT = {"data": 12, "datacard": 9}
MAX_SAMPLES = 48


def page_data(console: Console, request: Request) -> Response:
    roots, index, problem = console.dataset(request)
    products = []
    if index is not None:
        by = {(s.product, s.split): s for s in index.splits}
        for product in index.products:
            train, val = by.get((product, "train")), by.get((product, "val"))
            products.append({"name": product, "train": train, "val": val,
                             "inference": index.inference_images.get(product, 0),
                             "errors": sum(1 for p in index.errors if p.product == product),
                             "warnings": sum(1 for p in index.warnings if p.product == product)})
    return console.render(request, "data.html", "data", roots=roots, index=index, problem=problem,
                          products=products, sample_count=SAMPLE_COUNT["data"])


def page_datacard(console: Console, request: Request) -> Response:
    roots, index, problem = console.dataset(request)
    chart = None
    if index is not None and index.card:
        chart = charts.class_distribution(index.card["classes"], index.colour_hex())
    return console.render(request, "datacard.html", "datacard", roots=roots, index=index, problem=problem,
                          chart=chart, sample_count=SAMPLE_COUNT["datacard"],
                          active_class=request.query_params.get("class", ""))


def api_samples(console: Console, request: Request) -> Response:
    """A random choice of images of a split (optionally of one class), as tiles with a full-size link."""
    _, index, problem = console.dataset(request)
    if index is None:
        return JSONResponse({"ok": False, "message": problem}, status_code=404)
    split = request.query_params.get("split", "val")
    if split not in ("train", "val"):
        return JSONResponse({"ok": False, "message": f"unknown split {split!r}"}, status_code=400)
    wanted = request.query_params.get("class", "")
    classes = [wanted] if wanted else []
    if wanted and wanted not in index.class_names:
        return JSONResponse({"ok": False, "message": f"unknown class {wanted!r}"}, status_code=400)
    try:
        count = max(1, min(MAX_SAMPLES, int(request.query_params.get("n", "12"))))
        seed = int(request.query_params.get("seed") or random.randrange(1 << 30))
    except ValueError:
        return JSONResponse({"ok": False, "message": "n and seed must be integers"}, status_code=400)
    chosen = console.volume.samples(index, split, classes, count, seed)
    candidates = sum(1 for s in index.split_images(split)
                     if not classes or {index.class_names[b.class_id] for b in s.labeled.boxes} & set(classes))
    ds = index.path
    items = [{
        "key": s.key, "caption": f"{s.product} · {s.file_name}",
        "classes": sorted({index.class_names[b.class_id] for b in s.labeled.boxes}),
        "boxes": len(s.labeled.boxes),
        "tile": "/img/sample?" + urlencode({"ds": ds, "key": s.key, "size": "tile"}),
        "full": "/img/sample?" + urlencode({"ds": ds, "key": s.key, "size": "full"}),
    } for s in chosen]
    return JSONResponse({"ok": True, "items": items, "seed": seed, "split": split, "class": wanted,
                         "candidates": candidates, "colours": index.colour_hex()})


def img_sample(console: Console, request: Request) -> Response:
    """One sample image with its boxes drawn, tile or lightbox size (JPEG)."""
    _, index, problem = console.dataset(request)
    key = request.query_params.get("key", "")
    if index is None or key not in index.samples:
        raise HTTPException(404, problem or "no such sample")
    side = LIGHTBOX_SIDE if request.query_params.get("size") == "full" else TILE_SIDE
    data = console.volume.render(index, key, side)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
