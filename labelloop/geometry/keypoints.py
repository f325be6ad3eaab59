"""Keypoints: COCO person keypoints, visibility flags, and the Label Studio convention for them.

Storage (HUMAN_LABELS ``keypoints``, COCO ``keypoints``): a flat list ``[x1, y1, v1, x2, y2, v2,
...]`` with one triple per named keypoint of the category, in the category's keypoint order;
``x, y`` are float pixels of the EXIF-corrected image (origin top-left, x right, y down; the
same continuous frame as boxes: a point at ``x = 0`` lies on the image's left edge), ``v`` is
COCO's visibility flag (https://cocodataset.org/#format-data, "Keypoint Detection"):

- ``v = 0``: not labeled (``x = y = 0``);
- ``v = 1``: labeled but not visible (occluded);
- ``v = 2``: labeled and visible.

Label Studio keypoints (``KeyPointLabels``) carry no visibility flag, so labelloop defines one
(:func:`labelloop.formats.labelstudio.tasks.label_config_xml` writes it into the labeling config):

- a keypoint the reviewer did not place is ``v = 0``;
- a placed keypoint is ``v = 2``, unless the reviewer picked ``occluded`` in the per-region
  choice ``keypoint_visibility`` (``<Choices perRegion="true">``) for it, which makes it ``v = 1``
  (picking ``visible`` or nothing keeps ``v = 2``);
- on export, ``v = 0`` points are left out, ``v = 1`` points get a ``keypoint_visibility``
  result with ``["occluded"]`` carrying the same region id, ``v = 2`` points none.

Label Studio keypoints are separate regions; which instance (person box) a keypoint belongs to
is read (1) from its region id ``"<instance region id>:<keypoint name>"`` (what labelloop
exports, kept by Label Studio when a reviewer edits a pre-annotation), else (2) from the one
box of a keypoint category that contains the point. A keypoint inside no such box, or inside
several, rejects the annotation with a reason naming it; it is never attached by guesswork.
"""

from __future__ import annotations

import math
from typing import Sequence

# COCO 2017 person keypoints, in the order of person_keypoints_*.json ("categories"[0]["keypoints"]).
COCO_PERSON_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
# COCO 2017 person skeleton: 1-based keypoint index pairs, as in person_keypoints_*.json.
COCO_PERSON_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

NOT_LABELED, OCCLUDED, VISIBLE = 0, 1, 2
VISIBILITY_CONTROL = "keypoint_visibility"  # <Choices name=... perRegion="true">
CHOICE_OCCLUDED, CHOICE_VISIBLE = "occluded", "visible"
ID_SEP = ":"  # keypoint region id = f"{instance_region_id}:{keypoint_name}"


class KeypointError(ValueError):
    """Keypoints that do not fit their category's schema or the image (the message says which)."""


def triples(points: dict[str, tuple[float, float, int]], names: Sequence[str]) -> list[float]:
    """``{name: (x, y, v)}`` -> flat COCO list in ``names`` order; missing names are ``0, 0, 0``."""
    out: list[float] = []
    for n in names:
        x, y, v = points.get(n, (0.0, 0.0, NOT_LABELED))
        out += [0.0, 0.0, 0.0] if v == NOT_LABELED else [float(x), float(y), float(v)]
    return out


def num_keypoints(flat: Sequence[float] | None) -> int:
    """COCO ``num_keypoints``: triples with ``v > 0``."""
    return 0 if not flat else sum(1 for i in range(2, len(flat), 3) if flat[i] > 0)


def check_triples(flat: Sequence[float], names: Sequence[str], width: float, height: float) -> list[float]:
    """Validate a flat COCO keypoint list for a ``width x height`` image; returns floats.

    Raises:
        KeypointError: wrong length (``3 * len(names)``), a non-finite number, a visibility flag
            other than 0/1/2, or a labeled point (v > 0) outside ``[0, width] x [0, height]``.
    """
    vals = [float(v) for v in flat]
    if len(vals) != 3 * len(names):
        raise KeypointError(f"keypoints need {3 * len(names)} numbers ({len(names)} x, y, v triples), got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise KeypointError("keypoints contain a non-finite number")
    for i, name in enumerate(names):
        x, y, v = vals[3 * i:3 * i + 3]
        if v not in (0.0, 1.0, 2.0):
            raise KeypointError(f"keypoint {name}: visibility must be 0, 1 or 2, got {v:g}")
        if v > 0 and not (-1e-6 <= x <= width + 1e-6 and -1e-6 <= y <= height + 1e-6):
            raise KeypointError(f"keypoint {name} ({x:.2f}, {y:.2f}) outside the {width:g}x{height:g} image")
    return vals


def ls_visibility(choices: Sequence[str] | None) -> int:
    """Visibility flag of a placed Label Studio keypoint from its per-region choices."""
    return OCCLUDED if choices and CHOICE_OCCLUDED in choices else VISIBLE


def group_keypoints(points: list[dict], instances: list[dict]) -> dict[int, dict[str, tuple[float, float, int]]]:
    """Assign placed keypoints to instances (see the module docstring).

    Args:
        points: ``{"region_id", "name", "x", "y", "v"}`` (pixels), one per placed keypoint.
        instances: ``{"index", "region_id", "bbox", "names"}`` for the boxes of categories with
            keypoints (``names``: that category's keypoint names).

    Returns:
        ``instance index -> {name: (x, y, v)}``.

    Raises:
        KeypointError: a keypoint whose id names no instance and that lies in no or several
            instance boxes, a name not in its instance's schema, or the same name twice on one
            instance.
    """
    by_rid = {str(i["region_id"]): i for i in instances if i.get("region_id") is not None}
    out: dict[int, dict[str, tuple[float, float, int]]] = {}
    for p in points:
        what = f"keypoint {p['name']}" + (f" (region {p['region_id']})" if p.get("region_id") else "")
        owner = None
        rid = str(p.get("region_id") or "")
        if ID_SEP in rid:
            owner = by_rid.get(rid.rsplit(ID_SEP, 1)[0])
        if owner is None:
            inside = [i for i in instances if p["name"] in i["names"] and i["bbox"][0] - 1e-6 <= p["x"] <= i["bbox"][2] + 1e-6
                      and i["bbox"][1] - 1e-6 <= p["y"] <= i["bbox"][3] + 1e-6]
            if not inside:
                raise KeypointError(f"{what} at ({p['x']:.1f}, {p['y']:.1f}) lies in no box of a category with that keypoint")
            if len(inside) > 1:
                raise KeypointError(f"{what} at ({p['x']:.1f}, {p['y']:.1f}) lies in {len(inside)} boxes: "
                                    "ambiguous; give it the id '<box region id>:<name>'")
            owner = inside[0]
        if p["name"] not in owner["names"]:
            raise KeypointError(f"{what}: not a keypoint of its instance (known: {', '.join(owner['names'])})")
        slot = out.setdefault(owner["index"], {})
        if p["name"] in slot:
            raise KeypointError(f"{what}: instance {owner.get('region_id') or owner['index']} has it twice")
        slot[p["name"]] = (float(p["x"]), float(p["y"]), int(p["v"]))
    return out


def ls_keypoint_results(flat: Sequence[float], names: Sequence[str], instance_id: str, width: int, height: int,
                        *, to_name: str = "image", from_name: str = "keypoint", size: float = 0.6) -> list[dict]:
    """Label Studio result items for one instance's keypoints (export; inverse of the import).

    ``v = 0`` points are left out; each placed point is a ``keypointlabels`` region with id
    ``"<instance_id>:<name>"``, ``x, y`` in percent of the image, ``width`` = point size in
    percent; ``v = 1`` points also get a ``choices`` result (``keypoint_visibility``,
    ``["occluded"]``) with the same id, Label Studio's per-region form.
    """
    out = []
    for i, name in enumerate(names):
        x, y, v = (float(t) for t in flat[3 * i:3 * i + 3])
        if v <= 0:
            continue
        rid = f"{instance_id}{ID_SEP}{name}"
        value = {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": size}
        common = {"id": rid, "to_name": to_name, "original_width": width, "original_height": height,
                  "image_rotation": 0}
        out.append(common | {"from_name": from_name, "type": "keypointlabels", "value": value | {"keypointlabels": [name]}})
        if int(v) == OCCLUDED:
            out.append(common | {"from_name": VISIBILITY_CONTROL, "type": "choices",
                                 "value": value | {"choices": [CHOICE_OCCLUDED]}})
    return out
