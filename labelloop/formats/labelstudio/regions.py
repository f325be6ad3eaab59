"""Normalizing one Label Studio result item (a region) of an export, for :mod:`labelloop.formats.labelstudio.reader`.

Accepted: results of labelloop's labeling config (:data:`labelloop.formats.labelstudio.tasks.CONTROLS`):
``rectanglelabels`` from ``label`` (``rotation`` kept in ``value``), ``polygonlabels`` from
``polygon``, ``brushlabels`` (``format`` ``rle``) from ``brush``, ``keypointlabels`` from ``keypoint`` and per-region ``choices`` from
``keypoint_visibility``, all with ``to_name`` ``image``. Anything else is a problem of the one
annotation that holds it (``RecordError``), never of the whole file.
"""

from __future__ import annotations

import math
from typing import Any, cast

from labelloop.formats.labelstudio.tasks import CONTROLS, OBJECT_NAME
from labelloop.formats.records import LsRegion, ParentRegion
from labelloop.geometry.boxes import ls_to_xyxy

# result type -> (region kind, key of its label list in ``value``)
_KINDS = {"rectanglelabels": ("rectangle", "rectanglelabels"), "polygonlabels": ("polygon", "polygonlabels"),
          "brushlabels": ("brush", "brushlabels"),
          "keypointlabels": ("keypoint", "keypointlabels"), "choices": ("visibility", "choices")}


class RecordError(Exception):
    """A problem confined to one annotation; carried in the record's ``error`` field."""


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _check_value(kind: str, value: dict, name: str) -> None:
    """Numeric geometry present and well-formed for the region kind; raises RecordError."""
    try:
        if kind == "rectangle":
            ls_to_xyxy(value, 100, 100)  # numeric fields present, rotation finite
        elif kind == "keypoint":
            if not all(math.isfinite(float(value[k])) for k in ("x", "y")):
                raise ValueError(f"keypoint needs finite x, y; got {value!r}")
        elif kind == "brush":
            if value.get("format") != "rle":
                raise ValueError(f"brush region format {value.get('format')!r} is not 'rle' (Label Studio brush RLE)")
            if not isinstance(value.get("rle"), list) or not value["rle"]:
                raise ValueError("brush region without an 'rle' list")
        elif kind == "polygon":
            pts = value.get("points")
            if not isinstance(pts, list) or len(pts) < 3:
                raise ValueError(f"polygon needs at least 3 points, got {str(pts)[:80]}")
            for pt in pts:
                if not isinstance(pt, (list, tuple)) or len(pt) != 2 or not all(math.isfinite(float(v)) for v in pt):
                    raise ValueError(f"polygon point {pt!r} is not a pair of finite numbers")
    except (KeyError, TypeError, ValueError) as exc:
        msg = str(exc) if isinstance(exc, ValueError) else f"{kind} needs numeric coordinates; got {value!r}"
        raise RecordError(f"{name}: {msg}") from None


def parse_region(item: Any, index: int, *, min_format: bool, control: str | None = None) -> LsRegion:
    """Normalize one result item (JSON) or region value (JSON-MIN, found under ``control``).

    Checks ``from_name`` / ``to_name`` against labelloop's labeling config
    (:data:`labelloop.formats.labelstudio.tasks.CONTROLS` on the object ``image``) and the result type
    against its control; format problems raise ``RecordError``.
    """
    if not isinstance(item, dict):
        raise RecordError(f"region #{index} is not an object")
    value: dict | None
    to_name: str | None
    if min_format:
        value = {k: v for k, v in item.items() if k not in ("original_width", "original_height", "image_rotation")}
        rid, from_name, to_name = None, control, OBJECT_NAME
        rtype = CONTROLS.get(control or "")
        name = f"region #{index}"
    else:
        value, rid, rtype = item.get("value"), _str_or_none(item.get("id")), item.get("type")
        from_name, to_name = item.get("from_name"), item.get("to_name")
        name = f"region {rid}" if rid is not None else f"region #{index}"
    if not isinstance(from_name, str) or from_name not in CONTROLS:
        raise RecordError(f"{name}: from_name {from_name!r} is not a control of the labelloop labeling config "
                           f"(expected one of {', '.join(CONTROLS)})")
    if to_name != OBJECT_NAME:
        raise RecordError(f"{name}: to_name {to_name!r} is not the image object {OBJECT_NAME!r} of the labeling config")
    rtype = str(rtype).lower()
    if rtype != CONTROLS[from_name]:
        raise RecordError(f"{name}: unsupported result type {rtype!r} for control {from_name!r} "
                           f"(it makes {CONTROLS[from_name]} regions)")
    kind, label_key = _KINDS[rtype]
    if not isinstance(value, dict):
        raise RecordError(f"{name}: missing value")
    labels = value.get(label_key)
    if kind == "visibility":
        if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
            raise RecordError(f"{name}: choices must be a list of strings, got {labels!r}")
        category = None
    else:
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
            raise RecordError(f"{name}: needs exactly one label, got {labels!r}")
        category = labels[0]
        _check_value(kind, value, name)
    return {"region_id": rid, "kind": kind, "category": category, "value": value,
            "original_width": item.get("original_width"), "original_height": item.get("original_height"),
            "type": rtype}


def parent_regions(prediction: Any) -> list[ParentRegion]:
    """Rectangle regions of the prediction an annotation was created from; others are dropped."""
    out: list[ParentRegion] = []
    result = prediction.get("result")
    for i, item in enumerate(result if isinstance(result, list) else []):
        try:
            reg = parse_region(item, i, min_format=False)
        except RecordError:
            continue
        if reg["kind"] != "rectangle":
            continue
        score = item.get("score", prediction.get("score"))
        try:
            score = None if score is None else float(score)
        except (TypeError, ValueError):
            score = None  # the shown region still counts; only its score is unreadable
        reg.pop("type")
        out.append(cast(ParentRegion, reg | {"score": score}))  # the region (its kind kept) and its score
    return out
