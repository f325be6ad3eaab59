"""Instance masks: COCO RLE text, polygons, and the conversions between them.

Storage convention: a mask is COCO run-length encoding serialized to JSON text,
``{"size": [h, w], "counts": "<compressed RLE>"}``, where ``counts`` is the compressed string
that ``pycocotools.mask.encode`` produces (column-major runs, starting with background),
decoded from bytes to ``str`` (https://cocodataset.org/#format-data, "segmentation").

Pixel convention for polygons: pixel ``(row i, col j)`` is the unit square
``[j, j + 1] x [i, i + 1]``, its centre at ``(j + 0.5, i + 0.5)``; this is how
``pycocotools.mask.frPyObjects`` rasterizes polygons (a pixel is inside when its centre is).
:func:`mask_to_polygons` therefore traces the pixel *edges* of each part, not the pixel
centres that ``cv2.findContours`` returns, so a polygon rasterizes back to exactly the part it
came from (holes filled). Tracing centres instead would shrink every part by half a pixel.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

#: Longest polygon boundary, in pixels over all parts, that :func:`polygons_to_rle` rasterizes.
MAX_POLYGON_LENGTH = 1_000_000  # px of boundary (all parts) :func:`polygons_to_rle` rasterizes at most


def _as_binary(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {arr.shape}")
    return (arr != 0).astype(np.uint8)


def _counts_total(counts: str) -> int:
    """Sum of the runs of a compressed RLE string; ValueError when it is malformed.

    Mirrors ``rleFrString`` of pycocotools' ``maskApi.c`` (6-bit LEB128-like chunks offset by
    48, runs after the second delta-coded). pycocotools itself reads past the end of the
    buffer on some bad strings, so the text is checked here before it is decoded.
    """
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("compressed RLE counts end in the middle of a run")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE counts contain an invalid character {counts[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("compressed RLE counts decode to a negative run")
        runs.append(x)
    return sum(runs)


def _rle_obj(rle_json: str | dict) -> dict:
    """Parse and validate RLE JSON text (or an already parsed dict) into a pycocotools RLE."""
    try:
        obj = json.loads(rle_json) if isinstance(rle_json, (str, bytes)) else rle_json
    except json.JSONDecodeError as exc:
        raise ValueError(f"mask is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or "size" not in obj or "counts" not in obj:
        raise ValueError(f"mask must be a JSON object with 'size' and 'counts', got {str(rle_json)[:80]!r}")
    size = obj["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise ValueError(f"mask 'size' must be [height, width] non-negative integers, got {size!r}")
    h, w = size
    if h >= 2**31 or w >= 2**31 or h * w >= 2**32:  # pycocotools keeps runs as 32-bit unsigned ints
        raise ValueError(f"mask 'size' {size!r} is too large (at most 2**32 - 1 pixels)")
    counts = obj["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, list):  # uncompressed RLE: plain run lengths
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        total = sum(counts)
    elif isinstance(counts, str):
        total = _counts_total(counts)
    else:
        raise ValueError(f"mask 'counts' must be a string or a list, got {type(counts).__name__}")
    if total != h * w:
        raise ValueError(f"RLE runs cover {total} pixels but size {h}x{w} has {h * w}")
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii")}


def _to_json(rle: dict) -> str:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return json.dumps({"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts})


def encode_rle(mask: np.ndarray) -> str:
    """Encode a binary mask as COCO RLE JSON text.

    Args:
        mask: ``(H, W)`` array, bool or any numeric dtype; non-zero pixels are foreground.

    Returns:
        ``'{"size": [H, W], "counts": "..."}'`` with pycocotools' compressed counts as ``str``.

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    rle = mask_utils.encode(np.asfortranarray(_as_binary(mask)))
    return _to_json(rle)


def decode_rle(rle_json: str) -> np.ndarray:
    """Decode COCO RLE JSON text into an ``(H, W)`` ``uint8`` array of 0 and 1.

    Accepts compressed (string) or uncompressed (list) counts.

    Raises:
        ValueError: not JSON, missing/ill-typed ``size`` or ``counts``, a size of 2**32 pixels
            or more, an invalid counts string, or runs that do not add up to ``H * W``.
    """
    return np.ascontiguousarray(mask_utils.decode(_rle_obj(rle_json)), dtype=np.uint8)


def rle_area(rle_json: str) -> float:
    """Foreground area of an RLE mask, in pixels (square pixels). Raises ValueError if malformed."""
    return float(mask_utils.area(_rle_obj(rle_json)))


def rle_bbox_xyxy(rle_json: str) -> list[float]:
    """Tight box ``[x0, y0, x1, y1]`` (pixel edges, x1/y1 exclusive) of an RLE mask.

    An empty mask gives ``[0, 0, 0, 0]``. Raises ValueError if malformed.
    """
    x, y, w, h = (float(v) for v in mask_utils.toBbox(_rle_obj(rle_json)))
    return [x, y, x + w, y + h]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outline of each connected part as a COCO polygon ``[x1, y1, x2, y2, ...]``.

    Parts are 8-connected (``cv2.findContours`` with ``RETR_EXTERNAL``); holes are ignored,
    i.e. filled (use :func:`has_holes` / :func:`coco_segmentation` to keep them). Coordinates
    are float pixels on pixel edges (see the module docstring): the mask is upsampled 2x onto
    a grid of pixel centres, edges and corners, each foreground pixel closes its 3x3 block, and
    the contour of that grid divided by 2 runs along the pixel boundaries. A single pixel at
    ``(row 3, col 4)`` gives ``[4, 3, 4, 4, 5, 4, 5, 3]``; ``frPyObjects`` + ``decode`` of the
    result reproduces the hole-filled mask exactly. Straight runs are compressed
    (``CHAIN_APPROX_SIMPLE``). Outlines with fewer than 3 points are dropped (not reachable
    with edge tracing, but COCO would read 4 numbers as a box).

    Args:
        mask: ``(H, W)`` array; non-zero is foreground.

    Returns:
        One flat list per part (at least 6 numbers), ordered as OpenCV finds them; ``[]`` for
        an empty mask.
    """
    m = _as_binary(mask)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return []
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = m[r0:r1, c0:c1]
    grid: np.ndarray = np.zeros((2 * crop.shape[0] + 1, 2 * crop.shape[1] + 1), np.uint8)
    grid[1::2, 1::2] = crop
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(grid, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) / 2.0 + (float(c0), float(r0))
        if len(pts) >= 3:
            out.append(pts.ravel().tolist())
    return out


def has_holes(mask: np.ndarray) -> bool:
    """Whether any part of ``(H, W)`` ``mask`` encloses background (a contour with a parent
    in ``cv2.findContours(..., RETR_CCOMP)``; foreground 8-connected, holes 4-connected)."""
    _, hierarchy = cv2.findContours(_as_binary(mask), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def coco_segmentation(rle_json: str) -> list | dict:
    """The ``segmentation`` value of a COCO annotation for a stored mask.

    Polygons (:func:`mask_to_polygons`) when the mask has no holes, otherwise the compressed
    RLE dict ``{"size": [h, w], "counts": str}``, which pycocotools (``annToRLE``/``annToMask``)
    reads for ``iscrowd: 0`` annotations too. Raises ValueError if ``rle_json`` is malformed.
    """
    rle = _rle_obj(rle_json)
    mask = mask_utils.decode(rle)
    if has_holes(mask):
        return json.loads(_to_json(rle))
    return mask_to_polygons(mask)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> str:
    """Rasterize COCO polygons (pixel-edge convention, union of all parts) into RLE JSON text.

    pycocotools (``rleFrPoly``) allocates memory for every point of the boundary upsampled 5x, so
    a hostile polygon (a vertex at 1e8, or thousands of edges zigzagging across the image) would
    take gigabytes or crash the process; such polygons are refused first: every vertex must lie
    within ``max(height, width)`` px of the image, the edges of all parts together may be at most
    :data:`MAX_POLYGON_LENGTH` px long, and the image must have fewer than 2**32 pixels.

    Raises:
        ValueError: a polygon has fewer than 3 points, an odd count or a non-finite number, a
            vertex far outside the image, a boundary too long to rasterize, or an image too large
            (see above).
    """
    if height * width >= 2**32:  # pycocotools keeps runs as 32-bit unsigned ints
        raise ValueError(f"a {width}x{height} image is too large to rasterize polygons on (2**32 pixels or more)")
    polys = []
    margin = max(height, width)
    budget = float(MAX_POLYGON_LENGTH)
    for i, poly in enumerate(polygons):
        try:
            arr = np.asarray(poly, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"polygon {i} is not a flat list of numbers: {str(poly)[:80]}") from None
        if arr.size < 6 or arr.size % 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"polygon {i} must be >= 3 finite x, y pairs, got {len(arr)} numbers")
        xs, ys = arr[0::2], arr[1::2]
        if xs.min() < -margin or ys.min() < -margin or xs.max() > width + margin or ys.max() > height + margin:
            raise ValueError(f"polygon {i} has a vertex far outside the {width}x{height} image "
                             f"(x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g})")
        budget -= float(np.maximum(np.abs(xs - np.roll(xs, -1)), np.abs(ys - np.roll(ys, -1))).sum())
        if budget < 0:
            raise ValueError(f"polygons up to #{i} have a boundary longer than {MAX_POLYGON_LENGTH} px: "
                             "too long to rasterize")
        polys.append(arr.tolist())
    if not polys:
        return encode_rle(np.zeros((height, width), np.uint8))
    return _to_json(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> str:
    """A COCO ``segmentation`` value -> RLE JSON text of a ``height x width`` mask.

    Accepts a polygon list (``[[x1, y1, ...], ...]``), a compressed RLE dict (``counts`` str
    or bytes) or an uncompressed RLE dict (``counts`` list of run lengths), as in
    https://cocodataset.org/#format-data.

    Raises:
        ValueError: an unknown shape, a malformed RLE or polygon, or an RLE ``size`` other
            than ``[height, width]``.
    """
    if isinstance(segmentation, list):
        return polygons_to_rle(segmentation, height, width)
    if isinstance(segmentation, dict):
        rle = _rle_obj(segmentation)
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE size {list(rle['size'])} differs from the image {height}x{width}")
        return _to_json(rle)
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def mask_iou(a_rle: str, b_rle: str) -> float:
    """Mask intersection over union in [0, 1] (``pycocotools.mask.iou``, non-crowd).

    Raises:
        ValueError: malformed RLE or masks of different sizes.
    """
    a, b = _rle_obj(a_rle), _rle_obj(b_rle)
    if list(a["size"]) != list(b["size"]):
        raise ValueError(f"masks differ in size: {list(a['size'])} vs {list(b['size'])}")
    return float(mask_utils.iou([a], [b], [0])[0][0])
