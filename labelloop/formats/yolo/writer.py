"""Ultralytics YOLO label layouts: per-image label text and the dataset ``data.yaml``.

One ``.txt`` per image (same stem, ``labels/<split>/`` beside ``images/<split>/``, the folder
Ultralytics derives by replacing ``images`` with ``labels``), one line per object, class indices
0-based, every coordinate normalized by the image width / height to [0, 1]. A negative image
still gets an (empty) ``.txt``. The three layouts (https://docs.ultralytics.com/datasets/):

- ``detect``: ``class cx cy w h`` (box centre and size);
- ``segment``: ``class x1 y1 x2 y2 ...`` (one polygon per object, at least 3 points). A mask's
  outer outline is used (a YOLO polygon has no holes); a mask of several parts is joined into
  one polygon by zero-width bridges between the parts, the practice of Ultralytics' own COCO
  converter; a label with a box and no mask is written as its box's 4 corners, because
  Ultralytics reads every line of a file as a polygon once one line is;
- ``pose``: ``class cx cy w h x1 y1 v1 ... xK yK vK`` with K keypoints shared by the dataset
  (``kpt_shape: [K, 3]`` in data.yaml), v as in COCO (0 not labeled, written ``0 0 0``; 1
  labeled, not visible; 2 visible); objects of classes without keypoints get K ``0 0 0``.

Crowd regions (``iscrowd``) are left out of every YOLO layout, as Ultralytics' COCO converter
leaves them out; they stay in the COCO files.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import yaml

from labelloop.geometry.boxes import box_problem, yolo_to_xyxy
from labelloop.geometry.masks import decode_rle, mask_to_polygons
from labelloop.tables.schemas import LabelRow

SPLITS = ("train", "val", "test")
TASKS = ("detect", "segment", "pose")


def _class_index(categories: Sequence[str]) -> dict[str, int]:
    if len(set(categories)) != len(categories):
        raise ValueError(f"duplicate category names in {list(categories)!r}")
    return {name: i for i, name in enumerate(categories)}


def _check_label(lab: LabelRow, where: str, index: dict, categories, width: int, height: int) -> None:
    """Raise ValueError naming the label (``where``) if its category is unknown or its box invalid."""
    if lab.get("category") not in index:
        raise ValueError(f"{where} has category {lab.get('category')!r}, not one of {list(categories)!r}")
    problem = box_problem(lab.get("bbox"), width, height)
    if problem:
        raise ValueError(f"{where}: {problem}")


def box_fields(bbox: Sequence[float], width: int, height: int) -> list[str]:
    """YOLO ``cx cy w h`` text of an xyxy pixel box whose implied edges stay inside [0, 1].

    Rounding ``cx`` and ``w`` separately can put ``cx + w / 2`` at 1.0000005 for a box touching
    the right edge (and ``cx - w / 2`` below 0 on the left), which Ultralytics' loader clips or
    refuses. Here the edges are normalized, clipped to [0, 1] and rounded to 6 decimals first
    (integers ``a <= b`` in millionths); ``w = b - a`` is written with 6 decimals and
    ``cx = (a + b) / 2`` with 7 (a half millionth is exact there), so ``cx - w / 2`` and
    ``cx + w / 2`` are exactly the rounded edges, in decimal arithmetic.

    Returns ``[cx, cy, w, h]`` as strings.
    """
    x0, y0, x1, y1 = (float(v) for v in bbox)
    out_c, out_s = [], []
    for lo, hi, size in ((x0, x1, width), (y0, y1, height)):
        a, b = (int(round(min(max(v / size, 0.0), 1.0) * 1_000_000)) for v in (lo, hi))
        a, b = min(a, b), max(a, b)
        out_c.append(f"{(a + b) / 2_000_000:.7f}")
        out_s.append(f"{(b - a) / 1_000_000:.6f}")
    return [out_c[0], out_c[1], out_s[0], out_s[1]]


def yolo_lines(labels: Sequence[LabelRow], width: int, height: int, categories: Sequence[str]) -> str:
    """Label text of one image: ``"<class> <cx> <cy> <w> <h>\\n"`` per label.

    Args:
        labels: LABELS-shaped dicts of one image (``label_id``, ``category``, ``bbox`` xyxy
            pixels of the EXIF-corrected ``width x height`` image).
        width, height: image size in pixels.
        categories: names; the class index is the 0-based position in this list.

    Returns:
        Lines sorted by ``label_id`` with values normalized to [0, 1] (:func:`box_fields`: centres
        at 7 decimals, sizes at 6, edges inside [0, 1]), each ending in a newline; ``""`` when there are no labels (write the empty file anyway).

    Raises:
        ValueError: a category not in ``categories`` or a box that is not valid inside the
            image (:func:`labelloop.geometry.boxes.box_problem`), naming the label.
    """
    index = _class_index(categories)
    lines = []
    for lab in sorted(labels, key=lambda d: (str(d.get("label_id")), list(d.get("bbox") or []))):
        where = f"label {lab.get('label_id')!r}"
        _check_label(lab, where, index, categories, width, height)
        lines.append(f"{index[lab['category']]} " + " ".join(box_fields(lab["bbox"], width, height)) + "\n")
    return "".join(lines)


def data_yaml(categories: Sequence[str], splits: Sequence[str], kpt_shape: Sequence[int] | None = None,
              flip_idx: Sequence[int] | None = None, listed: Sequence[str] = ()) -> str:
    """Ultralytics dataset YAML for a release laid out as ``images/<split>``, ``labels/<split>``.

    Keys, in this order: ``train``/``val``/``test`` (only the splits given, always in that
    order) as ``images/<split>``, or ``<split>.txt`` for the splits in ``listed`` (an image list,
    one ``./images/<split>/<file>`` per line, which Ultralytics resolves against the list's
    folder: used when some image of the split must stay out of the YOLO view), for pose datasets ``kpt_shape`` (``[K, 3]``) and ``flip_idx``
    (when given), ``nc``, and ``names`` as an index -> name mapping, the form Ultralytics
    writes. There is no ``path`` key, so Ultralytics resolves the split folders relative to the
    YAML file's own folder. Deterministic text.

    Raises:
        ValueError: an unknown or repeated split, duplicate category names, or a ``flip_idx``
            that is not a permutation of ``0..K-1``.
    """
    index = _class_index(categories)
    bad = [s for s in splits if s not in SPLITS]
    if bad or len(set(splits)) != len(splits):
        raise ValueError(f"splits must be distinct names among {SPLITS}, got {list(splits)!r}")
    doc: dict = {s: f"{s}.txt" if s in listed else f"images/{s}" for s in SPLITS if s in splits}
    if kpt_shape is not None:
        doc["kpt_shape"] = [int(kpt_shape[0]), int(kpt_shape[1])]
        if flip_idx is not None:
            if sorted(flip_idx) != list(range(int(kpt_shape[0]))):
                raise ValueError(f"flip_idx must be a permutation of 0..{int(kpt_shape[0]) - 1}, got {list(flip_idx)}")
            doc["flip_idx"] = [int(i) for i in flip_idx]
    doc["nc"] = len(index)
    doc["names"] = {i: name for name, i in index.items()}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


def parse_yolo_lines(text: str, width: int, height: int, categories: Sequence[str]) -> list[dict]:
    """Parse YOLO detection label text back into ``{"category", "bbox"}`` dicts (xyxy pixels).

    Blank lines are skipped; order is kept.

    Raises:
        ValueError: naming the line: not exactly 5 fields (segment/pose lines included), a
            class index outside ``categories``, or a non-numeric or non-finite value.
    """
    names = list(categories)
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"line {n}: expected 'class cx cy w h', got {len(fields)} fields: {line!r}")
        try:
            cls = int(fields[0])
            vals = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"line {n}: not numbers: {line!r}") from None
        if not 0 <= cls < len(names):
            raise ValueError(f"line {n}: class index {cls} outside 0..{len(names) - 1}")
        if not all(np.isfinite(vals)):
            raise ValueError(f"line {n}: non-finite value: {line!r}")
        out.append({"category": names[cls], "bbox": yolo_to_xyxy(vals, width, height)})
    return out


# ---- segment and pose layouts ---------------------------------------------------------------
def join_parts(parts: list[list[float]]) -> list[float]:
    """One polygon (flat ``x, y`` list) covering several polygons, joined by zero-width bridges.

    The largest part (shoelace area) comes first; each next part is the one with the point
    nearest the current entry point. The path walks each part's full ring from its entry point
    back to it, jumps to the next part's entry, and after the last part returns along the same
    bridges, so the bridges enclose no area.
    """
    rings = [np.asarray(p, dtype=float).reshape(-1, 2) for p in parts if len(p) >= 6]
    if not rings:
        return []
    if len(rings) == 1:
        return rings[0].ravel().tolist()

    def area(r: np.ndarray) -> float:
        return 0.5 * abs(float(np.dot(r[:, 0], np.roll(r[:, 1], -1)) - np.dot(r[:, 1], np.roll(r[:, 0], -1))))

    remaining = sorted(rings, key=lambda r: (-area(r), r[0, 0], r[0, 1]))
    first = remaining.pop(0)
    others = np.concatenate(remaining)
    d = ((first[:, None, :] - others[None, :, :]) ** 2).sum(-1)
    chain = [(first, int(np.unravel_index(np.argmin(d), d.shape)[0]))]
    while remaining:
        here = chain[-1][0][chain[-1][1]]
        best = min(range(len(remaining)), key=lambda i: (((remaining[i] - here) ** 2).sum(-1).min(), i))
        ring = remaining.pop(best)
        chain.append((ring, int(np.argmin(((ring - here) ** 2).sum(-1)))))
    path: list[np.ndarray] = []
    for ring, e in chain:
        rolled = np.roll(ring, -e, axis=0)
        path += [rolled, rolled[:1]]
    path += [ring[e][None, :] for ring, e in reversed(chain[1:-1])]
    return np.concatenate(path).ravel().tolist()


def object_polygon(label: LabelRow) -> list[float]:
    """Pixel polygon of a label for the segment layout: its mask's outer outline (parts joined,
    :func:`join_parts`), else its box's corners clockwise from the top-left."""

    mask = label.get("mask")
    if mask:
        poly = join_parts(mask_to_polygons(decode_rle(mask)))
        if poly:
            return poly
    x0, y0, x1, y1 = (float(v) for v in label["bbox"])
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def flip_index(names: Sequence[str]) -> list[int] | None:
    """Ultralytics ``flip_idx`` for keypoint names: ``left_*`` and ``right_*`` swap, others stay;
    None when the names have no left/right pairs."""
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if n.startswith(a) and b + n[len(a):] in pos:
                out.append(pos[b + n[len(a):]])
                break
        else:
            out.append(pos[n])
    return out if out != list(range(len(names))) else None


def _norm(values: Sequence[float], width: int, height: int) -> list[float]:
    arr = np.asarray(values, dtype=float).reshape(-1, 2) / np.array([width, height], dtype=float)
    return np.clip(arr, 0.0, 1.0).ravel().tolist()


def label_text(task: str, labels: Sequence[LabelRow], width: int, height: int, categories: Sequence[str],
               kpt_count: int = 0) -> str:
    """Label text of one image in the ``task`` layout (``detect``, ``segment``, ``pose``).

    ``labels``: LABELS-shaped dicts of one image (``bbox`` xyxy pixels, ``mask`` RLE JSON,
    ``keypoints`` flat x, y, v pixels, ``iscrowd``); crowd regions are left out. ``kpt_count``:
    K of the pose layout. Lines are sorted by label_id; boxes as :func:`box_fields` writes them,
    other values at 6 decimals; each line ends in a newline; ``""`` for an image without objects
    (a crowd-only image gets ``""`` too: :func:`yolo_view_excludes` says which images must then
    stay out of the YOLO view).

    Raises:
        ValueError: an unknown task or category, an invalid box, a malformed mask, or keypoints
            that are not K (x, y, v) triples with v in {0, 1, 2}; the message names the label.
    """
    if task not in TASKS:
        raise ValueError(f"unknown YOLO task {task!r}: use one of {TASKS}")
    objects = [lab for lab in labels if not lab.get("iscrowd")]
    if task == "detect":
        return yolo_lines(objects, width, height, categories)
    index = _class_index(categories)
    lines = []
    for lab in sorted(objects, key=lambda d: (str(d.get("label_id")), list(d.get("bbox") or []))):
        where = f"label {lab.get('label_id')!r}"
        _check_label(lab, where, index, categories, width, height)
        if task == "segment":
            try:
                vals = _norm(object_polygon(lab), width, height)
            except ValueError as exc:
                raise ValueError(f"{where}: bad mask: {exc}") from None
            fields = [f"{v:.6f}" for v in vals]
        else:
            fields = box_fields(lab["bbox"], width, height)
            vals = []
            kp = list(lab.get("keypoints") or [0.0] * (3 * kpt_count))
            if len(kp) != 3 * kpt_count:
                raise ValueError(f"{where} has {len(kp)} keypoint numbers, the pose layout needs {3 * kpt_count}")
            for i in range(kpt_count):
                x, y, v = (float(t) for t in kp[3 * i: 3 * i + 3])
                if v not in (0.0, 1.0, 2.0):
                    raise ValueError(f"{where}: keypoint {i} has visibility {v}, want 0, 1 or 2")
                vals += [0.0, 0.0, 0.0] if v == 0 else [*_norm([x, y], width, height), v]
            fields += [f"{v:.6f}" for v in vals]
        lines.append(f"{index[lab['category']]} " + " ".join(fields) + "\n")
    return "".join(lines)


def yolo_view_excludes(labels: Sequence[LabelRow]) -> bool:
    """True when an image's labels are all crowd regions (at least one): YOLO cannot hold them
    (they are left out, as Ultralytics' COCO converter leaves them out), and an empty label file
    would claim the image has no objects, so the image must stay out of the YOLO view."""
    return bool(labels) and all(lab.get("iscrowd") for lab in labels)


def check_label_text(text: str, task: str, nc: int, kpt_count: int = 0) -> list[str]:
    """Problems of a label file as Ultralytics' loader checks it (``verify_image_label``):
    the field count of the layout, a class index in ``0..nc-1``, finite values, normalized
    coordinates in [0, 1], keypoint visibility in {0, 1, 2}. Returns ``"line N: ..."`` texts,
    ``[]`` for a valid file (an empty file is a valid negative)."""
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls = int(fields[0])
            vals = np.array([float(v) for v in fields[1:]])
        except ValueError:
            problems.append(f"line {n}: not numbers: {line[:80]!r}")
            continue
        want = {"detect": "== 4", "pose": f"== {4 + 3 * kpt_count}"}.get(task)
        if task == "segment" and (len(vals) < 6 or len(vals) % 2):
            problems.append(f"line {n}: a polygon needs an even number >= 6 of coordinates, got {len(vals)}")
        elif want and len(vals) != int(want[3:]):
            problems.append(f"line {n}: the {task} layout needs {int(want[3:]) + 1} fields, got {len(fields)}")
        elif not 0 <= cls < nc:
            problems.append(f"line {n}: class index {cls} outside 0..{nc - 1}")
        elif not np.all(np.isfinite(vals)):
            problems.append(f"line {n}: non-finite value")
        else:
            coords = vals if task != "pose" else np.concatenate([vals[:4], np.delete(vals[4:], np.s_[2::3])])
            if coords.min() < 0 or coords.max() > 1:
                problems.append(f"line {n}: coordinate outside [0, 1]")
            if task == "pose" and not set(vals[6::3].tolist()) <= {0.0, 1.0, 2.0}:
                problems.append(f"line {n}: keypoint visibility outside {{0, 1, 2}}")
    return problems
