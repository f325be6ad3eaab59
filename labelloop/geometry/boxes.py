"""Box geometry and conversions at the edges.

Internal convention: ``bbox = (x0, y0, x1, y1)`` (xyxy), float pixels of the EXIF-corrected
image, origin at the top-left corner, x to the right, y down; a box covers ``[x0, x1) x [y0, y1)``
so its area is ``(x1 - x0) * (y1 - y0)``. Edge formats:

- COCO: ``[x, y, w, h]`` in pixels, top-left anchored (https://cocodataset.org/#format-data).
- YOLO: ``cx cy w h`` normalized by the image width/height (Ultralytics dataset docs).
- Label Studio RectangleLabels: ``x, y, width, height`` in percent (0-100) of the displayed
  image, top-left anchored, ``rotation`` in degrees (clockwise) about the top-left corner (Label
  Studio docs, "Import pre-annotated data"). A rotated rectangle is read as the axis-aligned box
  enclosing it (:func:`ls_to_xyxy`); the rotation is kept beside it by the importers.
- CVAT boxes: ``xtl, ytl, xbr, ybr`` pixels, ``rotation`` in degrees (clockwise) about the
  box centre (CVAT for images 1.1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Box = tuple[float, float, float, float]


def xyxy_to_xywh(bbox: Sequence[float]) -> list[float]:
    """``(x0, y0, x1, y1)`` -> COCO ``[x, y, w, h]`` (pixels)."""
    x0, y0, x1, y1 = map(float, bbox)
    return [x0, y0, x1 - x0, y1 - y0]


def xywh_to_xyxy(bbox: Sequence[float]) -> list[float]:
    """COCO ``[x, y, w, h]`` -> ``[x0, y0, x1, y1]`` (pixels)."""
    x, y, w, h = map(float, bbox)
    return [x, y, x + w, y + h]


def xyxy_to_yolo(bbox: Sequence[float], width: int, height: int) -> list[float]:
    """``(x0, y0, x1, y1)`` pixels -> YOLO ``[cx, cy, w, h]`` normalized to [0, 1]."""
    x0, y0, x1, y1 = map(float, bbox)
    return [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]


def yolo_to_xyxy(cxcywh: Sequence[float], width: int, height: int) -> list[float]:
    """YOLO normalized ``[cx, cy, w, h]`` -> ``[x0, y0, x1, y1]`` pixels."""
    cx, cy, w, h = map(float, cxcywh)
    return [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]


def xyxy_to_ls(bbox: Sequence[float], width: int, height: int) -> dict[str, float]:
    """``(x0, y0, x1, y1)`` pixels -> Label Studio ``{x, y, width, height, rotation}`` percent."""
    x0, y0, x1, y1 = map(float, bbox)
    return {
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0,
    }


def rotated_rect_corners(x0: float, y0: float, w: float, h: float, rotation: float,
                         pivot: str = "top-left") -> np.ndarray:
    """Corners of a ``w x h`` pixel rectangle with top-left ``(x0, y0)`` rotated by ``rotation``
    degrees, clockwise on screen (y points down), about its top-left corner (Label Studio) or
    its centre (``pivot="center"``, CVAT). Returns a ``(4, 2)`` float64 array: top-left,
    top-right, bottom-right, bottom-left of the unrotated rectangle, rotated."""
    t = np.deg2rad(float(rotation))
    c, s = np.cos(t), np.sin(t)
    local = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    if pivot == "center":
        local -= (w / 2.0, h / 2.0)
        origin = np.array([x0 + w / 2.0, y0 + h / 2.0])
    elif pivot == "top-left":
        origin = np.array([x0, y0])
    else:
        raise ValueError(f"pivot must be 'top-left' or 'center', got {pivot!r}")
    rot = np.array([[c, -s], [s, c]])  # y down: a positive angle turns +x towards +y (clockwise)
    return local @ rot.T + origin


def enclosing_box(corners: np.ndarray) -> list[float]:
    """Axis-aligned ``[x0, y0, x1, y1]`` enclosing ``(N, 2)`` points."""
    pts = np.asarray(corners, dtype=float).reshape(-1, 2)
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]


def ls_rotation(value: dict) -> float:
    """Rotation of a Label Studio rectangle in degrees, normalized to ``[0, 360)``; 0 when absent.

    Raises:
        ValueError: ``rotation`` is not a finite number.
    """
    try:
        r = float(value.get("rotation") or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"rectangle rotation must be a number, got {value.get('rotation')!r}") from None
    if not np.isfinite(r):
        raise ValueError(f"rectangle rotation must be finite, got {r}")
    r = r % 360.0
    return 0.0 if min(r, 360.0 - r) < 1e-6 else r


def ls_to_xyxy(value: dict, width: float, height: float) -> list[float]:
    """Label Studio percent rectangle -> ``[x0, y0, x1, y1]`` pixels of a ``width x height`` image.

    A rotated rectangle (``rotation`` != 0: degrees, clockwise, about its top-left corner
    ``(x, y)``, Label Studio docs "Object Detection template / Rotation") becomes the
    axis-aligned box that encloses its four corners, computed in *pixels* (percentages of a
    non-square image are not isotropic). Callers that must keep the rotation read it with
    :func:`ls_rotation` and store it beside the box (labelloop keeps it as an attribute).

    Raises:
        ValueError: a field is missing or not a number, or the rotation is not finite.
    """
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"rectangle needs numeric x, y, width, height; got {value!r}") from None
    rotation = ls_rotation(value)
    px, py, pw, ph = x * width / 100.0, y * height / 100.0, w * width / 100.0, h * height / 100.0
    if rotation == 0.0:
        return [px, py, px + pw, py + ph]
    return enclosing_box(rotated_rect_corners(px, py, pw, ph, rotation))


def area(bbox: Sequence[float]) -> float:
    """Area in square pixels; 0 for an empty or inverted box."""
    x0, y0, x1, y1 = bbox
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def box_problem(bbox: Sequence[float] | None, width: int, height: int, tol: float = 1e-6) -> str | None:
    """Why ``bbox`` is invalid for a ``width x height`` image, or ``None`` when it is valid.

    Valid: four finite numbers, positive area, inside ``[0, width] x [0, height]`` (``tol`` px).
    The message states the box as plain numbers (xyxy pixels, 2 decimals), never numpy reprs.
    """
    if bbox is None or len(bbox) != 4:
        return f"bbox must have 4 numbers, got {bbox!r}"
    arr = np.asarray(bbox, dtype=float)
    if not np.all(np.isfinite(arr)):
        return f"bbox has a non-finite value: {list(bbox)}"
    x0, y0, x1, y1 = arr
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return f"bbox has zero or negative area: {[round(float(v), 2) for v in arr]} (xyxy px)"
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        return f"bbox {[round(float(v), 2) for v in arr]} (xyxy px) outside the {width}x{height} image"
    return None


def clip(bbox: Sequence[float], width: int, height: int) -> list[float]:
    """Clip a box to the image ``[0, width] x [0, height]``."""
    x0, y0, x1, y1 = map(float, bbox)
    return [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes, in [0, 1] (0 when both are empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU. ``a``: (N, 4), ``b``: (M, 4) float xyxy -> (N, M) float64."""
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def greedy_match(
    boxes_a: Sequence[Sequence[float]],
    boxes_b: Sequence[Sequence[float]],
    min_iou: float,
    classes_a: Sequence[str] | None = None,
    classes_b: Sequence[str] | None = None,
    same_class: bool = True,
    order_a: Sequence[float] | None = None,
) -> list[tuple[int, int, float]]:
    """One-to-one greedy matching by IoU, as COCO evaluation does.

    ``a`` items are visited in descending ``order_a`` (e.g. scores; default: given order); each
    takes the unmatched ``b`` with the highest IoU >= ``min_iou`` (same class if ``same_class``).
    Returns ``(index_a, index_b, iou)`` triples.
    """
    m = iou_matrix(np.asarray(boxes_a, float), np.asarray(boxes_b, float))
    order = range(len(boxes_a)) if order_a is None else np.argsort(-np.asarray(order_a, float), kind="stable")
    taken: set[int] = set()
    pairs = []
    for i in order:
        best, best_j = min_iou, -1
        for j in range(len(boxes_b)):
            if j in taken:
                continue
            if same_class and classes_a is not None and classes_b is not None and classes_a[i] != classes_b[j]:
                continue
            if m[i, j] >= best:
                best, best_j = m[i, j], j
        if best_j >= 0:
            taken.add(best_j)
            pairs.append((int(i), best_j, float(m[i, best_j])))
    return pairs
