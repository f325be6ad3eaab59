"""Label Studio exports read back as review records.

Formats follow Label Studio 1.23 (pinned by the real files in
``tests/fixtures/label-studio-1.23.2``); what labelloop sends (labeling config, import tasks with
predictions) is :mod:`labelloop.formats.labelstudio.tasks`.

- exports: docs "Export annotations" (``JSON`` = list of tasks with ``annotations``; ``JSON-MIN`` =
  one flat object per annotation, data fields at the top level, regions under the control name).

Boxes in Label Studio are ``x, y, width, height`` in percent (0-100) of the *displayed* image,
top-left anchored; labelloop's boxes are ``[x0, y0, x1, y1]`` float pixels of the EXIF-corrected
image, which is what a browser displays, so the conversion is a plain scale
(:func:`labelloop.geometry.boxes.xyxy_to_ls` / :func:`labelloop.geometry.boxes.ls_to_xyxy`).

Images are referenced through Label Studio's local-files storage: start Label Studio with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
set to the *workspace root*, so that ``/data/local-files/?d=<uri>`` resolves the
workspace-relative ``uri`` of an image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from labelloop.formats.labelstudio.regions import RecordError, parent_regions, parse_region
from labelloop.formats.labelstudio.tasks import CONTROLS, TOOL
from labelloop.geometry.boxes import ls_to_xyxy

# Top-level keys of a JSON-MIN record that are not data fields or region lists.
_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history"}
_REGION_HINTS = ("rectanglelabels", "x", "points", "polygonlabels", "keypointlabels", "brushlabels", "labels")
DEFAULT_MAX_EXPORT_BYTES = 200 * 2**20  # review.max_export_mb default


class ExportFormatError(ValueError):
    """A Label Studio file is not JSON or not shaped like the expected format (message says why)."""


class ExportTooLarge(ExportFormatError):
    """An export file over the size limit; refused before it is read (message names file and sizes)."""




def check_size(path: str | Path, max_bytes: int | None) -> int:
    """Size of ``path`` in bytes; refuses a file over ``max_bytes`` before anything reads it.

    Raises:
        ExportTooLarge: the file is larger than ``max_bytes`` (the message names the file, its
            size and the limit, and the setting that raises it: ``review.max_export_mb``).
        OSError: the file cannot be stat'ed.
    """
    size = os.stat(path).st_size
    if max_bytes is not None and size > max_bytes:
        raise ExportTooLarge(
            f"{path}: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.1f} MiB limit for a review export "
            "(review.max_export_mb in labelloop.yaml); export fewer tasks per file or raise the limit"
        )
    return size


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


def _base(task_id: str, fmt: str, image_ref: Any, data_image_id: Any, project: Any) -> dict:
    return {"task_id": task_id, "tool_annotation_id": None, "updated_at": None, "created_at": None,
            "annotator": "ls-user-unknown", "was_cancelled": False,
            "image_ref": image_ref if isinstance(image_ref, str) else None,
            "data_image_id": _str_or_none(data_image_id), "project": _str_or_none(project), "format": fmt,
            "regions": [], "parent_regions": [], "parent_prediction_id": None, "error": None}


def _fill(rec: dict, ann: dict, ann_id_key: str, user_key: str) -> None:
    """Identity fields shared by both formats; raises RecordError when one is missing."""
    if ann.get(ann_id_key) is None:
        raise RecordError(f"annotation without {ann_id_key!r}")
    rec["tool_annotation_id"] = str(ann[ann_id_key])
    rec["created_at"] = _str_or_none(ann.get("created_at"))
    rec["annotator"] = annotator_pseudonym(ann.get(user_key))
    rec["was_cancelled"] = bool(ann.get("was_cancelled") or ann.get("skipped"))
    if not isinstance(ann.get("updated_at"), str) or not ann["updated_at"]:
        raise RecordError("annotation without 'updated_at'")
    rec["updated_at"] = ann["updated_at"]
    if rec["image_ref"] is None:
        raise RecordError("task has no image reference (data 'image')")


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
                    raise RecordError(f"annotation at index {j} is not an object")
                if rec["project"] is None and ann.get("project") is not None:
                    rec["project"] = str(ann["project"])
                _fill(rec, ann, "id", "completed_by")
                result = ann.get("result") or []
                if not isinstance(result, list):
                    raise RecordError("annotation 'result' is not a list")
                rec["regions"] = [parse_region(r, k, min_format=False) for k, r in enumerate(result)]
                pred = ann.get("prediction") if isinstance(ann.get("prediction"), dict) else {}
                rec["parent_regions"] = parent_regions(pred)
                rec["parent_prediction_id"] = _str_or_none(ann.get("parent_prediction", pred.get("id")))
            except RecordError as exc:
                rec["error"] = str(exc)
            out.append(rec)
    return out


def _min_region_lists(obj: dict) -> list[tuple[str, Any]]:
    """``(control, region)`` pairs of a JSON-MIN record: values under a control name of the
    labeling config (e.g. ``label``), and, under any other key, lists that look like regions
    (reported as regions of an unknown control, so the record is rejected, not half-read)."""
    found = []
    for key, value in obj.items():
        if key in _MIN_META:
            continue
        if key in CONTROLS:
            found.extend((key, v) for v in (value if isinstance(value, list) else [value]))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if any(h in v for v in value for h in _REGION_HINTS):
                found.extend((key, v) for v in value)
    return found


def _min_records(items: list[dict]) -> list[dict]:
    out = []
    for i, obj in enumerate(items):
        tid = _task_id(obj, i)
        rec = _base(tid, "json-min", obj.get("image"), obj.get("image_id"), None)
        try:
            _fill(rec, obj, "annotation_id", "annotator")
            rec["regions"] = [parse_region(r, k, min_format=True, control=c)
                              for k, (c, r) in enumerate(_min_region_lists(obj))]
        except RecordError as exc:
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
         "regions": [{"region_id": str|None, "kind": "rectangle"|"polygon"|"keypoint"|"visibility",
                      "category": str (label; keypoint name; None for visibility choices),
                      "value": the result's value (percent), "original_width", "original_height",
                      "type": "rectanglelabels"|"polygonlabels"|"keypointlabels"|"choices"}],
         "parent_regions": [{"region_id", "category", "value", "original_width",
                             "original_height", "score"}],   # JSON only: annotation.prediction
         "parent_prediction_id": str|None,
         "error": str|None}

    A problem confined to one annotation (a ``from_name`` / ``to_name`` / type that is not one of
    labelloop's controls, missing value or label, no ``updated_at``, no image reference...) does
    not raise; rotated rectangles are kept (``value.rotation``): the record carries it in
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


def read_export(path: str | Path, max_bytes: int | None = DEFAULT_MAX_EXPORT_BYTES) -> list[dict]:
    """Read a Label Studio export file (UTF-8 JSON, BOM tolerated) and :func:`parse_export` it.

    The size is checked first (:func:`check_size`): a file over ``max_bytes`` is refused whole
    before it is read (``None``: no limit).

    Raises:
        ExportTooLarge: over ``max_bytes``.
        ExportFormatError: not UTF-8, not JSON, or wrongly shaped; the message starts with the path.
        OSError: the file cannot be read.
    """
    path = Path(path)
    check_size(path, max_bytes)
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

    A rotated rectangle gives the axis-aligned box enclosing it (:func:`labelloop.geometry.boxes.ls_to_xyxy`).

    Raises:
        ValueError: no size known or a non-numeric field.
    """
    w = width if width is not None else region.get("original_width")
    h = height if height is not None else region.get("original_height")
    if w is None or h is None or not math.isfinite(float(w)) or not math.isfinite(float(h)):
        raise ValueError("image size unknown for this region")
    return ls_to_xyxy(region["value"], float(w), float(h))
