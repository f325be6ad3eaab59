"""Label Studio file formats: labeling config, import tasks with predictions, exports.

Formats follow Label Studio 1.23 (pinned by the real files in
``shared/fixtures/label-studio-1.23.2``):

- labeling config: docs "Labeling configuration" / "RectangleLabels tag";
- import tasks with predictions: docs "Import pre-annotated data";
- exports: docs "Export annotations" (``JSON`` = list of tasks with ``annotations``; ``JSON-MIN`` =
  one flat object per annotation, data fields at the top level, regions under the control name).

Boxes in Label Studio are ``x, y, width, height`` in percent (0-100) of the *displayed* image,
top-left anchored; labelloop's boxes are ``[x0, y0, x1, y1]`` float pixels of the EXIF-corrected
image, which is what a browser displays, so the conversion is a plain scale
(:func:`labelloop.geometry.xyxy_to_ls` / :func:`labelloop.geometry.ls_to_xyxy`).

Images are referenced through Label Studio's local-files storage: start Label Studio with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
set to the *workspace root*, so that ``/data/local-files/?d=<uri>`` resolves the
workspace-relative ``uri`` of an image.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from labelloop.geometry import ls_to_xyxy, xyxy_to_ls

TOOL = "label-studio"
OBJECT_NAME = "image"  # <Image name="image" value="$image"/>
CONTROL_NAME = "label"  # <RectangleLabels name="label" toName="image">
REGION_TYPE = "rectanglelabels"
LOCAL_FILES_PREFIX = "/data/local-files/?d="

# Top-level keys of a JSON-MIN record that are not data fields or region lists.
_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history"}
_REGION_HINTS = ("rectanglelabels", "x", "points", "polygonlabels", "keypointlabels", "brushlabels", "labels")


class ExportFormatError(ValueError):
    """A Label Studio file is not JSON or not shaped like the expected format (message says why)."""


class _RecordError(Exception):
    """A problem confined to one annotation; carried in the record's ``error`` field."""


# --------------------------------------------------------------------------- config, import


def label_config_xml(categories: list[str]) -> str:
    """Labeling config for boxes: ``<View>`` with ``<Image name="image" value="$image"/>`` and
    ``<RectangleLabels name="label" toName="image">`` holding one ``<Label value=.../>`` per
    category, in the given order (Label Studio docs, "RectangleLabels tag"). Values are
    XML-escaped.

    Raises:
        ValueError: no categories, or a duplicate or empty category name.
    """
    if not categories or len(set(categories)) != len(categories) or any(not c for c in categories):
        raise ValueError(f"categories must be a non-empty list of unique, non-empty names: {categories}")
    lines = [f'  <Image name="{OBJECT_NAME}" value="${OBJECT_NAME}"/>',
             f'  <RectangleLabels name="{CONTROL_NAME}" toName="{OBJECT_NAME}">',
             *(f"    <Label value={quoteattr(c)}/>" for c in categories), "  </RectangleLabels>"]
    return "\n".join(["<View>", *lines, "</View>"])


def image_reference(uri: str) -> str:
    """Label Studio local-files URL of a workspace-relative ``uri``:
    ``"/data/local-files/?d=" + quote(uri)`` (slashes kept). Requires
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` = the workspace root (docs, "Local storage")."""
    return LOCAL_FILES_PREFIX + quote(uri.lstrip("/"), safe="/")


def image_ref_path(image_ref: str) -> str:
    """The file path an image reference points at, for matching against our images.

    ``/data/local-files/?d=photos/a%20b.png`` -> ``photos/a b.png`` (the ``d`` value, decoded as
    Django decodes it); other URLs (``http(s)://``, ``s3://``, ``/data/upload/...``) -> the URL
    path without the leading slash; anything else -> the string itself as a POSIX path.
    """
    ref = str(image_ref).strip()
    parts = urlsplit(ref)
    if parts.query:
        d = parse_qs(parts.query).get("d")
        if d:
            return d[0].lstrip("/")
    if parts.scheme or ref.startswith("/"):
        return unquote(parts.path).lstrip("/")
    path = ref.replace("\\", "/")
    return path[2:] if path.startswith("./") else path


def build_import_tasks(
    images: list[dict], predictions: list[dict], model_version: str, batch: str
) -> tuple[list[dict], list[dict]]:
    """Label Studio import tasks with pre-annotations (docs, "Import pre-annotated data").

    Args:
        images: IMAGES rows to send (``image_id, uri, source_path, width, height``); one task per
            distinct image_id (a byte-identical duplicate is sent once, under its original).
        predictions: PREDICTIONS rows; those of other images are ignored.
        model_version: written on each task's prediction.
        batch: the export name; EXPORTED_PREDICTIONS rows get ``source = "labelloop/<batch>"``.

    Returns:
        ``(tasks, exported)``: tasks sorted by source_path, each
        ``{"data": {"image", "image_id", "source_path", "batch"}, "predictions": [{"model_version",
        "score", "result"}]}`` where ``score`` is the lowest region score (0.0 without regions) and
        each region is ``{"id": prediction_id, "from_name": "label", "to_name": "image",
        "type": "rectanglelabels", "original_width", "original_height", "image_rotation": 0,
        "value": {x, y, width, height (percent), "rotation": 0, "rectanglelabels": [category]},
        "score"}``; ``exported`` are EXPORTED_PREDICTIONS rows (``region_id = prediction_id``).
    """
    chosen: dict[str, dict] = {}
    for img in sorted(images, key=lambda r: (r.get("duplicate_of") is not None, r["source_path"])):
        chosen.setdefault(img["image_id"], img)
    by_image: dict[str, list[dict]] = {}
    for p in predictions:
        if p["image_id"] in chosen:
            by_image.setdefault(p["image_id"], []).append(p)
    source = f"labelloop/{batch}"
    tasks, exported = [], []
    for img in sorted(chosen.values(), key=lambda r: r["source_path"]):
        w, h = int(img["width"]), int(img["height"])
        preds = sorted(by_image.get(img["image_id"], []), key=lambda p: (-float(p["score"]), p["prediction_id"]))
        result = []
        for p in preds:
            value = xyxy_to_ls(p["bbox"], w, h) | {"rectanglelabels": [p["category"]]}
            result.append({"id": p["prediction_id"], "from_name": CONTROL_NAME, "to_name": OBJECT_NAME,
                           "type": REGION_TYPE, "original_width": w, "original_height": h, "image_rotation": 0,
                           "value": value, "score": float(p["score"])})
            exported.append({"source": source, "image_id": img["image_id"], "region_id": p["prediction_id"],
                             "prediction_id": p["prediction_id"], "category": p["category"],
                             "bbox": [float(v) for v in p["bbox"]], "score": float(p["score"]),
                             "model_version": model_version})
        score = min((float(p["score"]) for p in preds), default=0.0)
        data = {"image": image_reference(img["uri"]), "image_id": img["image_id"],
                "source_path": img["source_path"], "batch": batch}
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "score": score,
                                                     "result": result}]})
    return tasks, exported


# --------------------------------------------------------------------------- exports


def annotator_pseudonym(value: Any) -> str:
    """``ls-user-<id>`` for an integer user id; ``ls-user-`` + 12 hex of sha256 of the email for
    an email string or a ``{"email": ...}`` dict (expanded ``completed_by``); ``ls-user-unknown``
    when absent. Emails never reach our tables."""
    if isinstance(value, dict):
        value = value.get("email") or value.get("id")
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.strip().isdigit():
        return f"ls-user-{int(value)}"
    if not isinstance(value, str) or not value.strip():
        return "ls-user-unknown"
    return "ls-user-" + hashlib.sha256(value.strip().encode("utf-8")).hexdigest()[:12]


def record_item(rec: dict) -> str:
    """Human-readable name of a record for REJECTS rows: ``"task 12 annotation 7"``."""
    ann = rec.get("tool_annotation_id")
    return f"task {rec.get('task_id')}" + (f" annotation {ann}" if ann is not None else "")


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _region(item: Any, index: int, *, min_format: bool) -> dict:
    """Normalize one result item (JSON) or region value (JSON-MIN); format problems raise."""
    if not isinstance(item, dict):
        raise _RecordError(f"region #{index} is not an object")
    if min_format:
        value = {k: v for k, v in item.items() if k not in ("original_width", "original_height", "image_rotation")}
        rid, rtype = None, REGION_TYPE if "rectanglelabels" in item else None
        name = f"region #{index}"
    else:
        value, rid, rtype = item.get("value"), _str_or_none(item.get("id")), item.get("type")
        name = f"region {rid}" if rid is not None else f"region #{index}"
    if str(rtype).lower() != REGION_TYPE:
        raise _RecordError(f"{name}: unsupported result type {rtype!r} (only rectanglelabels boxes are imported)")
    if not isinstance(value, dict):
        raise _RecordError(f"{name}: missing value")
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise _RecordError(f"{name}: needs exactly one label, got {labels!r}")
    try:
        ls_to_xyxy(value, 100, 100)  # numeric fields present, not rotated
    except ValueError as exc:
        raise _RecordError(f"{name}: {exc}") from None
    return {"region_id": rid, "category": labels[0], "value": value, "original_width": item.get("original_width"),
            "original_height": item.get("original_height"), "type": REGION_TYPE}


def _parent_regions(prediction: Any) -> list[dict]:
    """Regions of the prediction an annotation was created from; unusable ones are dropped."""
    out = []
    result = prediction.get("result")
    for i, item in enumerate(result if isinstance(result, list) else []):
        try:
            reg = _region(item, i, min_format=False)
        except _RecordError:
            continue
        score = item.get("score", prediction.get("score"))
        reg.pop("type")
        out.append(reg | {"score": None if score is None else float(score)})
    return out


def _base(task_id: str, fmt: str, image_ref: Any, data_image_id: Any, project: Any) -> dict:
    return {"task_id": task_id, "tool_annotation_id": None, "updated_at": None, "created_at": None,
            "annotator": "ls-user-unknown", "was_cancelled": False,
            "image_ref": image_ref if isinstance(image_ref, str) else None,
            "data_image_id": _str_or_none(data_image_id), "project": _str_or_none(project), "format": fmt,
            "regions": [], "parent_regions": [], "parent_prediction_id": None, "error": None}


def _fill(rec: dict, ann: dict, ann_id_key: str, user_key: str) -> None:
    """Identity fields shared by both formats; raises _RecordError when one is missing."""
    if ann.get(ann_id_key) is None:
        raise _RecordError(f"annotation without {ann_id_key!r}")
    rec["tool_annotation_id"] = str(ann[ann_id_key])
    rec["created_at"] = _str_or_none(ann.get("created_at"))
    rec["annotator"] = annotator_pseudonym(ann.get(user_key))
    rec["was_cancelled"] = bool(ann.get("was_cancelled") or ann.get("skipped"))
    if not isinstance(ann.get("updated_at"), str) or not ann["updated_at"]:
        raise _RecordError("annotation without 'updated_at'")
    rec["updated_at"] = ann["updated_at"]
    if rec["image_ref"] is None:
        raise _RecordError("task has no image reference (data 'image')")


def _task_id(item: dict, index: int) -> str:
    tid = item.get("id")
    if tid is None or isinstance(tid, bool) or not isinstance(tid, (int, str)) or str(tid) == "":
        raise ExportFormatError(f"task at index {index} has no 'id'")
    return str(tid)


def _json_records(tasks: list[dict]) -> list[dict]:
    out = []
    for i, task in enumerate(tasks):
        tid = _task_id(task, i)
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        anns = task.get("annotations", task.get("completions"))
        if not isinstance(anns, list):
            rec = _base(tid, "json", data.get("image"), data.get("image_id"), task.get("project"))
            rec["error"] = f"'annotations' is {type(anns).__name__}, not a list"
            out.append(rec)
            continue
        for j, ann in enumerate(anns):
            rec = _base(tid, "json", data.get("image"), data.get("image_id"), task.get("project"))
            try:
                if not isinstance(ann, dict):
                    raise _RecordError(f"annotation at index {j} is not an object")
                if rec["project"] is None and ann.get("project") is not None:
                    rec["project"] = str(ann["project"])
                _fill(rec, ann, "id", "completed_by")
                result = ann.get("result") or []
                if not isinstance(result, list):
                    raise _RecordError("annotation 'result' is not a list")
                rec["regions"] = [_region(r, k, min_format=False) for k, r in enumerate(result)]
                pred = ann.get("prediction") if isinstance(ann.get("prediction"), dict) else {}
                rec["parent_regions"] = _parent_regions(pred)
                rec["parent_prediction_id"] = _str_or_none(ann.get("parent_prediction", pred.get("id")))
            except _RecordError as exc:
                rec["error"] = str(exc)
            out.append(rec)
    return out


def _min_region_lists(obj: dict) -> list[Any]:
    """Values of a JSON-MIN record that hold regions (keyed by control name, e.g. ``label``)."""
    found = []
    for key, value in obj.items():
        if key in _MIN_META:
            continue
        if key == CONTROL_NAME and not isinstance(value, list):
            found.append(value)  # malformed; _region reports it
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if key == CONTROL_NAME or any(h in v for v in value for h in _REGION_HINTS):
                found.extend(value)
    return found


def _min_records(items: list[dict]) -> list[dict]:
    out = []
    for i, obj in enumerate(items):
        tid = _task_id(obj, i)
        rec = _base(tid, "json-min", obj.get("image"), obj.get("image_id"), None)
        try:
            _fill(rec, obj, "annotation_id", "annotator")
            rec["regions"] = [_region(r, k, min_format=True) for k, r in enumerate(_min_region_lists(obj))]
        except _RecordError as exc:
            rec["error"] = str(exc)
        out.append(rec)
    return out


def parse_export(obj: Any) -> list[dict]:
    """Normalize a parsed Label Studio export (docs, "Export annotations": JSON or JSON-MIN).

    JSON is a list of tasks, each with ``id``, ``data`` and ``annotations``; JSON-MIN is a flat
    list with one object per annotation (``id`` = task id, ``annotation_id``, ``annotator``, data
    fields at the top level, regions under the control name such as ``label``, absent when the
    result is empty; Label Studio leaves cancelled annotations out of JSON-MIN).

    Returns one record per annotation::

        {"task_id": str, "tool_annotation_id": str, "updated_at": str, "created_at": str|None,
         "annotator": "ls-user-...", "was_cancelled": bool, "image_ref": str,
         "data_image_id": str|None, "project": str|None, "format": "json"|"json-min",
         "regions": [{"region_id": str|None, "category": str, "value": {x, y, width, height,
                      rotation, rectanglelabels} (percent), "original_width", "original_height",
                      "type": "rectanglelabels"}],
         "parent_regions": [{"region_id", "category", "value", "original_width",
                             "original_height", "score"}],   # JSON only: annotation.prediction
         "parent_prediction_id": str|None,
         "error": str|None}

    A problem confined to one annotation (rotated or non-rectangle region, missing value or
    label, no ``updated_at``, no image reference...) does not raise: the record carries it in
    ``error`` so the importer rejects that annotation alone. Drafts are ignored.

    Raises:
        ExportFormatError: not a list, an item that is not an object, a task without ``id``, items
            of neither (or both) formats, or a Label Studio *import* file (tasks without
            annotations).
    """
    if not isinstance(obj, list):
        raise ExportFormatError(
            "expected a JSON list of tasks (Label Studio JSON export) or of annotations (JSON-MIN), "
            f"got a {type(obj).__name__}"
        )
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise ExportFormatError(f"item at index {i} is a {type(item).__name__}, expected an object")
    if not obj:
        return []
    is_json = ["annotations" in t or "completions" in t for t in obj]
    is_min = ["annotation_id" in t or "annotator" in t for t in obj]
    if all(is_json) and not any(is_min):
        return _json_records(obj)
    if all(is_min) and not any(is_json):
        return _min_records(obj)
    if not any(is_json) and not any(is_min) and any("predictions" in t or "data" in t for t in obj):
        raise ExportFormatError("this is a Label Studio import file (tasks without 'annotations'), not an export")
    for i, (a, b) in enumerate(zip(is_json, is_min)):
        if a == b:
            what = "both" if a else "neither"
            raise ExportFormatError(
                f"item at index {i} looks like {what} of a JSON export task (key 'annotations') "
                "and a JSON-MIN annotation (key 'annotation_id')"
            )
    raise ExportFormatError("the file mixes JSON export tasks and JSON-MIN annotations")


def read_export(path: str | Path) -> list[dict]:
    """Read a Label Studio export file (UTF-8 JSON, BOM tolerated) and :func:`parse_export` it.

    Raises:
        ExportFormatError: not UTF-8, not JSON, or wrongly shaped; the message starts with the path.
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ExportFormatError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_export(obj)
    except ExportFormatError as exc:
        raise ExportFormatError(f"{path}: {exc}") from None


def default_source(records: list[dict], path: str | Path, inbox: Path | None = None) -> str:
    """Review source of an export: ``label-studio/project-<n>`` from the tasks' ``project`` field
    (JSON exports carry it); else ``label-studio/<subfolder>`` when ``path`` lies in a subfolder
    of the review ``inbox``; else ``label-studio/<file stem>``. JSON-MIN has no project field, so
    its default source differs from the JSON export of the same project: pass one explicitly
    to import both forms under the same identity.

    Raises:
        ExportFormatError: the records come from several projects.
    """
    projects = sorted({r["project"] for r in records if r.get("project") is not None})
    if len(projects) > 1:
        raise ExportFormatError(f"{path}: tasks from several Label Studio projects: {projects}")
    if projects:
        return f"{TOOL}/project-{projects[0]}"
    path = Path(path)
    if inbox is not None:
        try:
            rel = path.resolve().parent.relative_to(Path(inbox).resolve())
        except ValueError:
            rel = None
        if rel is not None and rel.parts:
            return f"{TOOL}/{PurePosixPath(*rel.parts)}"
    return f"{TOOL}/{path.stem}"


def region_bbox(region: dict, width: float | None = None, height: float | None = None) -> list[float]:
    """Pixel ``[x0, y0, x1, y1]`` of a parsed region, on a ``width x height`` image (default: the
    region's own ``original_width/height``).

    Raises:
        ValueError: no size known, a non-numeric field, or a rotated rectangle.
    """
    w = width if width is not None else region.get("original_width")
    h = height if height is not None else region.get("original_height")
    if w is None or h is None or not math.isfinite(float(w)) or not math.isfinite(float(h)):
        raise ValueError("image size unknown for this region")
    return ls_to_xyxy(region["value"], float(w), float(h))
