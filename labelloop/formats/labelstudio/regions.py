"""Normalizing one Label Studio result item (a region) of an export, for :mod:`labelloop.formats.labelstudio.reader`.

Accepted: results of labelloop's labeling config (:data:`labelloop.formats.labelstudio.tasks.CONTROLS`):
``rectanglelabels`` from ``label`` (``rotation`` kept in ``value``), ``polygonlabels`` from
``polygon``, ``brushlabels`` (``format`` ``rle``) from ``brush``, ``keypointlabels`` from ``keypoint``, per-region ``choices`` from
``keypoint_visibility`` and image-level ``choices`` from ``tags`` (the ``level: tag`` categories,
read as one region of kind ``tag`` whose ``value["choices"]`` lists the categories chosen; the
importer checks each is a tag category), all with ``to_name`` ``image``. Anything else is a problem of the one
annotation that holds it (``RecordError``), never of the whole file.

A project with its own labeling config names its controls otherwise (``<RectangleLabels
name="bbox" toName="img">``). Such a region maps to labelloop's control of the same region type
(``rectanglelabels`` -> ``label``, ``polygonlabels`` -> ``polygon``, ``brushlabels`` -> ``brush``,
``keypointlabels`` -> ``keypoint``; JSON-MIN, which has no type, by the label key of the value),
and its ``to_name`` may name any image object, when that is unambiguous: one foreign control per
type and one image object in the annotation (:func:`check_mapping`). The region keeps the name
it came with in ``mapped_from``, and the import reports the mapping. ``choices`` are never
mapped (another project's choices classify images; labelloop's are keypoint visibility).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, cast

from labelloop.formats.labelstudio.tasks import CONTROLS, OBJECT_NAME, TAG_CONTROL
from labelloop.formats.records import LsRegion, ParentRegion
from labelloop.geometry.boxes import ls_to_xyxy

# result type -> (region kind, key of its label list in ``value``)
_KINDS = {"rectanglelabels": ("rectangle", "rectanglelabels"), "polygonlabels": ("polygon", "polygonlabels"),
          "brushlabels": ("brush", "brushlabels"),
          "keypointlabels": ("keypoint", "keypointlabels"), "choices": ("visibility", "choices")}


#: For each region type but ``choices``, the labelloop control that makes it.
CONTROL_OF_TYPE = {rtype: control for control, rtype in CONTROLS.items() if rtype != "choices"}


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
        if rtype is None:  # another project's control: its type from the value's label key
            keys = [t for t in CONTROL_OF_TYPE if t in value]
            rtype = keys[0] if len(keys) == 1 else None
        name = f"region #{index}"
    else:
        value, rid, rtype = item.get("value"), _str_or_none(item.get("id")), item.get("type")
        from_name, to_name = item.get("from_name"), item.get("to_name")
        name = f"region {rid}" if rid is not None else f"region #{index}"
    mapped_from = None
    if not isinstance(from_name, str) or from_name not in CONTROLS:
        ours = CONTROL_OF_TYPE.get(str(rtype).lower()) if isinstance(from_name, str) and from_name else None
        if ours is None:
            raise RecordError(f"{name}: from_name {from_name!r} is not a control of the labelloop labeling config "
                              f"(expected one of {', '.join(CONTROLS)}) and its type {rtype!r} maps to none of them")
        mapped_from, from_name = from_name, ours
    if to_name != OBJECT_NAME:
        if mapped_from is None or not isinstance(to_name, str) or not to_name:
            raise RecordError(f"{name}: to_name {to_name!r} is not the image object {OBJECT_NAME!r} of the labeling config")
    rtype = str(rtype).lower()
    if rtype != CONTROLS[from_name]:
        raise RecordError(f"{name}: unsupported result type {rtype!r} for control {from_name!r} "
                           f"(it makes {CONTROLS[from_name]} regions)")
    kind, label_key = _KINDS[rtype]
    if not isinstance(value, dict):
        raise RecordError(f"{name}: missing value")
    labels = value.get(label_key)
    if from_name == TAG_CONTROL:  # image-level labels (tag categories), any number of them
        if not isinstance(labels, list) or not labels or not all(isinstance(c, str) and c for c in labels):
            raise RecordError(f"{name}: tag choices must be a non-empty list of category names, got {labels!r}")
        kind, category = "tag", None
    elif kind == "visibility":
        if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
            raise RecordError(f"{name}: choices must be a list of strings, got {labels!r}")
        category = None
    else:
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
            raise RecordError(f"{name}: needs exactly one label, got {labels!r}")
        category = labels[0]
        _check_value(kind, value, name)
    out: LsRegion = {"region_id": rid, "kind": kind, "category": category, "value": value,
                     "original_width": item.get("original_width"), "original_height": item.get("original_height"),
                     "type": rtype}
    if mapped_from is not None:
        out["mapped_from"] = mapped_from
        out["object_name"] = str(to_name)
    return out


def mapped_controls(record: Mapping[str, Any]) -> list[str]:
    """``"'<theirs>' -> '<ours>'"`` for each foreign control a record's regions were mapped from."""
    return sorted({f"{r['mapped_from']!r} -> {CONTROL_OF_TYPE[r['type']]!r}"
                   for r in record.get("regions") or [] if isinstance(r, Mapping) and r.get("mapped_from")})


def check_mapping(regions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The control mappings of one annotation's regions, as ``"<theirs> -> <ours>"`` (sorted), or
    RecordError when they are ambiguous: two controls (ours included) making one region type, or
    regions on more than one image object (labelloop's own controls are on ``image``)."""
    sources: dict[str, set[str]] = {}
    for r in regions:
        ours = CONTROL_OF_TYPE.get(str(r.get("type")))
        if ours is not None:
            sources.setdefault(ours, set()).add(str(r.get("mapped_from") or ours))
    if not any(r.get("mapped_from") for r in regions):
        return []
    for ours, names in sorted(sources.items()):
        if len(names) > 1:
            raise RecordError(f"controls {sorted(names)} all make {CONTROLS[ours]} regions: which one is "
                              f"labelloop's {ours!r} is ambiguous (rename them in the labeling config)")
    # the image objects the regions are on: a mapped region's own, labelloop's for the others
    objects = {r.get("object_name") if r.get("mapped_from") else OBJECT_NAME for r in regions}
    if len(objects) > 1:
        raise RecordError(f"regions on several image objects {sorted(str(o) for o in objects)}: ambiguous")
    return sorted(f"{next(iter(n))} -> {o}" for o, n in sources.items() if next(iter(n)) != o)


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
