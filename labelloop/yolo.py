"""Ultralytics YOLO detection format: per-image label text and the dataset ``data.yaml``.

Format: https://docs.ultralytics.com/datasets/detect/. One ``.txt`` per image (same stem,
``labels/<split>/`` beside ``images/<split>/``), one line per object
``class_index cx cy w h``, the box centre and size normalized by the image width/height
to [0, 1], class indices 0-based. A negative image still gets an (empty) ``.txt``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import yaml

from labelloop.geometry import box_problem, xyxy_to_yolo, yolo_to_xyxy

SPLITS = ("train", "val", "test")


def _class_index(categories: Sequence[str]) -> dict[str, int]:
    if len(set(categories)) != len(categories):
        raise ValueError(f"duplicate category names in {list(categories)!r}")
    return {name: i for i, name in enumerate(categories)}


def yolo_lines(labels: list[dict], width: int, height: int, categories: Sequence[str]) -> str:
    """Label text of one image: ``"<class> <cx> <cy> <w> <h>\\n"`` per label.

    Args:
        labels: LABELS-shaped dicts of one image (``label_id``, ``category``, ``bbox`` xyxy
            pixels of the EXIF-corrected ``width x height`` image).
        width, height: image size in pixels.
        categories: names; the class index is the 0-based position in this list.

    Returns:
        Lines sorted by ``label_id`` with values normalized to [0, 1] at 6 decimals, each
        ending in a newline; ``""`` when there are no labels (write the empty file anyway).

    Raises:
        ValueError: a category not in ``categories`` or a box that is not valid inside the
            image (:func:`labelloop.geometry.box_problem`), naming the label.
    """
    index = _class_index(categories)
    lines = []
    for lab in sorted(labels, key=lambda d: (str(d.get("label_id")), list(d.get("bbox") or []))):
        where = f"label {lab.get('label_id')!r}"
        if lab.get("category") not in index:
            raise ValueError(f"{where} has category {lab.get('category')!r}, not one of {list(categories)!r}")
        problem = box_problem(lab.get("bbox"), width, height)
        if problem:
            raise ValueError(f"{where}: {problem}")
        vals = np.clip(xyxy_to_yolo(lab["bbox"], width, height), 0.0, 1.0)
        lines.append(f"{index[lab['category']]} " + " ".join(f"{v:.6f}" for v in vals) + "\n")
    return "".join(lines)


def data_yaml(categories: Sequence[str], splits: Sequence[str]) -> str:
    """Ultralytics dataset YAML for a release laid out as ``images/<split>``, ``labels/<split>``.

    Keys, in this order: ``train``/``val``/``test`` (only the splits given, always in that
    order) as ``images/<split>``, ``nc``, and ``names`` as an index -> name mapping, the form
    Ultralytics writes. There is no ``path`` key, so Ultralytics resolves the split folders
    relative to the YAML file's own folder. Deterministic text.

    Raises:
        ValueError: an unknown or repeated split, or duplicate category names.
    """
    index = _class_index(categories)
    bad = [s for s in splits if s not in SPLITS]
    if bad or len(set(splits)) != len(splits):
        raise ValueError(f"splits must be distinct names among {SPLITS}, got {list(splits)!r}")
    doc: dict = {s: f"images/{s}" for s in SPLITS if s in splits}
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
