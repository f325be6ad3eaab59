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

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

import ijson

from labelloop.formats.labelstudio.regions import RecordError, check_mapping, parent_regions, parse_region
from labelloop.formats.labelstudio.tasks import CONTROLS, TAG_CONTROL, TOOL
from labelloop.formats.records import ParsedFile, ReviewRecord, annotator_pseudonym, new_record
from labelloop.geometry.boxes import ls_to_xyxy

# Top-level keys of a JSON-MIN record that are not data fields or region lists.
#: The guidelines versions accepted in task data, a sha256 (64 lowercase hex digits) or "none" (no guidelines file).
GUIDELINES_SHA = re.compile(r"[0-9a-f]{64}|none")
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


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _base(task_id: str, fmt: str, image_ref: Any, data_image_id: Any, project: Any,
          guidelines: Any = None) -> ReviewRecord:
    rec = new_record(TOOL, task_id, fmt, allow_name=True, image_ref=image_ref if isinstance(image_ref, str) else None,
                     data_image_id=_str_or_none(data_image_id), project=_str_or_none(project))
    if isinstance(guidelines, str) and GUIDELINES_SHA.fullmatch(guidelines):
        rec["data_guidelines_sha256"] = guidelines  # the version labelloop exported the task under
    return rec


def _fill(rec: ReviewRecord, ann: dict, ann_id_key: str, user_key: str) -> None:
    """Identity fields shared by both formats; raises RecordError when one is missing."""
    if ann.get(ann_id_key) is None:
        raise RecordError(f"annotation without {ann_id_key!r}")
    rec["tool_annotation_id"] = str(ann[ann_id_key])
    rec["item"] = f"task {rec['task_id']} annotation {rec['tool_annotation_id']}"
    rec["created_at"] = _str_or_none(ann.get("created_at"))
    rec["annotator"] = annotator_pseudonym(TOOL, ann.get(user_key))
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


def _json_records(tasks: list[dict]) -> list[ReviewRecord]:
    return [rec for i, task in enumerate(tasks) for rec in _json_task_records(task, i)]


def _json_task_records(task: dict, i: int) -> list[ReviewRecord]:
    """The records of one task of a JSON export (``i``: its index in the file)."""
    out = []
    tid = _task_id(task, i)
    raw_data = task.get("data")
    data = raw_data if isinstance(raw_data, dict) else {}
    anns = task.get("annotations", task.get("completions"))
    if not isinstance(anns, list):
        rec = _base(tid, "json", data.get("image"), data.get("image_id"), task.get("project"),
                    data.get("guidelines_sha256"))
        rec["error"] = f"'annotations' is {type(anns).__name__}, not a list"
        return [rec]
    for j, ann in enumerate(anns):
        rec = _base(tid, "json", data.get("image"), data.get("image_id"), task.get("project"),
                    data.get("guidelines_sha256"))
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
            check_mapping(rec["regions"])
            raw_pred = ann.get("prediction")
            pred = raw_pred if isinstance(raw_pred, dict) else {}
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
    found: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if key in _MIN_META:
            continue
        if key == TAG_CONTROL:  # JSON-MIN writes one choice as a string, several as {"choices": [...]}
            found.append((key, {"choices": [value]} if isinstance(value, str) else
                          {"choices": value} if isinstance(value, list) else value))
        elif key in CONTROLS:
            found.extend((key, v) for v in (value if isinstance(value, list) else [value]))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if any(h in v for v in value for h in _REGION_HINTS):
                found.extend((key, v) for v in value)
    return found


def _min_records(items: list[dict]) -> list[ReviewRecord]:
    return [_min_record(obj, i) for i, obj in enumerate(items)]


def _min_record(obj: dict, i: int) -> ReviewRecord:
    """The record of one JSON-MIN annotation (``i``: its index in the file)."""
    tid = _task_id(obj, i)
    rec = _base(tid, "json-min", obj.get("image"), obj.get("image_id"), None, obj.get("guidelines_sha256"))
    try:
        _fill(rec, obj, "annotation_id", "annotator")
        rec["regions"] = [parse_region(r, k, min_format=True, control=c)
                          for k, (c, r) in enumerate(_min_region_lists(obj))]
        check_mapping(rec["regions"])
    except RecordError as exc:
        rec["error"] = str(exc)
    return rec


def parse_export(obj: Any) -> list[ReviewRecord]:
    """Normalize a parsed Label Studio export (docs, "Export annotations": JSON or JSON-MIN).

    JSON is a list of tasks, each with ``id``, ``data`` and ``annotations``; JSON-MIN is a flat
    list with one object per annotation (``id`` = task id, ``annotation_id``, ``annotator``, data
    fields at the top level, regions under the control name such as ``label``, absent when the
    result is empty; Label Studio leaves cancelled annotations out of JSON-MIN).

    Returns one record per annotation::

        {"task_id": str, "tool_annotation_id": str, "updated_at": str, "created_at": str|None,
         "annotator": "ls-user-...", "was_cancelled": bool, "image_ref": str,
         "data_image_id": str|None, "project": str|None, "format": "json"|"json-min",
         "regions": [{"region_id": str|None, "kind": "rectangle"|"polygon"|"keypoint"|"visibility"|"tag",
                      "category": str (label; keypoint name; None for visibility and tag choices),
                      "value": the result's value (percent), "original_width", "original_height",
                      "type": "rectanglelabels"|"polygonlabels"|"keypointlabels"|"choices"}],
         "parent_regions": [{"region_id", "category", "value", "original_width",
                             "original_height", "score"}],   # JSON only: annotation.prediction
         "parent_prediction_id": str|None,
         "error": str|None,
         "data_guidelines_sha256": str}  # only when the task data carry a valid guidelines_sha256

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


class _Prefixed:
    """A binary file read from its start again after ``head`` (already read from it) was looked at."""

    def __init__(self, head: bytes, fh: BinaryIO):
        self.head, self.fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            return out
        return self.fh.read(n)


#: The deepest JSON nesting a streamed export may have. A Label Studio task nests about 8 deep
#: (task > annotations > result > value > points > point); ijson keeps a prefix string per level,
#: so memory grows with the square of the depth (a 200 KB file of 100,000 brackets took more
#: than 2 GiB) unless the depth is bounded before ijson sees it.
MAX_JSON_DEPTH = 64


class _DepthGuard:
    """A binary stream that counts JSON nesting (``[`` / ``{`` outside strings, string escapes
    followed across reads) in what passes through it and raises :class:`ExportFormatError`
    naming the file past :data:`MAX_JSON_DEPTH`. Only the structural bytes are looked at (one
    regular-expression scan per read)."""

    _TOKENS = re.compile(rb'[\\"\[\]{}]')

    def __init__(self, fh: Any, where: str, limit: int = MAX_JSON_DEPTH):
        self.fh, self.where, self.limit = fh, where, limit
        self.depth, self.in_string, self.skip_first = 0, False, False

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        skip_to = 1 if self.skip_first and data else 0
        self.skip_first = False
        for m in self._TOKENS.finditer(data, skip_to):
            pos = m.start()
            if pos < skip_to:
                continue
            c = data[pos]
            if self.in_string:
                if c == 0x5C:  # backslash: the next byte is escaped
                    skip_to = pos + 2
                    if skip_to > len(data):
                        self.skip_first = True
                elif c == 0x22:
                    self.in_string = False
            elif c == 0x22:
                self.in_string = True
            elif c in (0x5B, 0x7B):
                self.depth += 1
                if self.depth > self.limit:
                    raise ExportFormatError(f"{self.where}: JSON nested more than {self.limit} deep: not a Label "
                                            "Studio export")
            elif c in (0x5D, 0x7D):
                self.depth -= 1
        return data


def _one_line(exc: BaseException) -> str:
    msg = exc.args[0] if exc.args else ""
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return (text.strip().splitlines() or [type(exc).__name__])[0].strip()


class ExportStream:
    """A Label Studio JSON / JSON-MIN export read one item at a time (:func:`stream_export`).

    Iterate it once for the records, in file order, exactly those :func:`parse_export` gives for
    the whole file. ``container`` is ``project-<n>`` when the records seen so far name one project
    (before iterating, :meth:`peek` reads up to the first record); ``format`` is ``json`` or
    ``json-min`` once the first item was read. Memory: one item (task) and one pending record.

    Errors are raised while iterating, as :class:`ExportFormatError` whose message starts with
    ``where`` and is one line: not valid JSON (or not UTF-8), an item that is not an object, a task
    without ``id``, items of neither or both formats or of both mixed, a Label Studio import file,
    tasks from several projects. The records yielded before the error are not a partial result to
    keep: the caller stores nothing of a file that raised.
    """

    def __init__(self, items: Iterator[Any], where: str):
        self.where = where
        self.format: str | None = None
        self.projects: list[str] = []
        self._items = items
        self._pending: list[ReviewRecord] = []
        self._records = self._read()

    @property
    def container(self) -> str | None:
        """``project-<n>`` when the records read so far name exactly one project, else None."""
        return f"project-{self.projects[0]}" if len(self.projects) == 1 else None

    def peek(self) -> ReviewRecord | None:
        """The first record, read ahead and still yielded by the iteration (None: there is none).

        Raises:
            ExportFormatError: the file is malformed before its first record.
        """
        if not self._pending:
            nxt = next(self._records, None)
            if nxt is None:
                return None
            self._pending.append(nxt)
        return self._pending[0]

    def __iter__(self) -> Iterator[ReviewRecord]:
        while self._pending:
            yield self._pending.pop(0)
        yield from self._records

    def _note(self, rec: ReviewRecord) -> None:
        p = rec.get("project")
        if p is not None and p not in self.projects:
            self.projects.append(p)
            if len(self.projects) > 1:
                raise ExportFormatError(f"tasks from several Label Studio projects: {sorted(self.projects)}")

    def _read(self) -> Iterator[ReviewRecord]:
        try:
            yield from self._items_records()
        except ExportFormatError as exc:
            raise ExportFormatError(f"{self.where}: {_one_line(exc)}") from None
        except UnicodeDecodeError as exc:
            raise ExportFormatError(f"{self.where}: not UTF-8 text ({exc})") from None
        except ijson.JSONError as exc:
            msg = _one_line(exc)
            what = "not UTF-8 text" if "UTF8" in msg else "not valid JSON"
            raise ExportFormatError(f"{self.where}: {what} ({msg})") from None

    def _items_records(self) -> Iterator[ReviewRecord]:
        for i, item in enumerate(self._items):
            if not isinstance(item, dict):
                raise ExportFormatError(f"item at index {i} is a {type(item).__name__}, expected an object")
            is_json = "annotations" in item or "completions" in item
            is_min = "annotation_id" in item or "annotator" in item
            if is_json == is_min:
                if i == 0 and not is_json and ("predictions" in item or "data" in item):
                    raise ExportFormatError("this is a Label Studio import file (tasks without 'annotations'), "
                                            "not an export")
                raise ExportFormatError(
                    f"item at index {i} looks like {'both' if is_json else 'neither'} of a JSON export task (key "
                    "'annotations') and a JSON-MIN annotation (key 'annotation_id')")
            fmt = "json" if is_json else "json-min"
            if self.format is None:
                self.format = fmt
            elif fmt != self.format:
                raise ExportFormatError("the file mixes JSON export tasks and JSON-MIN annotations")
            for rec in _json_task_records(item, i) if is_json else [_min_record(item, i)]:
                self._note(rec)
                yield rec


def stream_export(fh: BinaryIO, *, where: str) -> ExportStream:
    """A Label Studio export (UTF-8 JSON, BOM tolerated) read from ``fh`` item by item with
    ``ijson`` instead of whole (:class:`ExportStream`): memory holds one task, not the file.

    Args:
        fh: the file, opened binary, at its start (a Label Studio export is a JSON list).
        where: the file's name, first in every message.

    Returns:
        :class:`ExportStream` (iterate it once for the records; ``container``, ``format``).

    Raises:
        ExportFormatError: the content does not start as a JSON list (the rest is checked while
            iterating, see :class:`ExportStream`).
        OSError: ``fh`` cannot be read.
    """
    head = fh.read(4096)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    while head.strip() == b"":
        more = fh.read(4096)
        if not more:
            break
        head = head.strip() + more
    first = head.lstrip()[:1]
    if first != b"[":
        got = {b"{": "an object", b"": "nothing"}.get(first, "no JSON list")
        raise ExportFormatError(f"{where}: expected a JSON list of tasks (Label Studio JSON export) or of "
                                f"annotations (JSON-MIN), got {got}")
    items = ijson.items(_DepthGuard(_Prefixed(head, fh), where), "item", use_float=True)
    return ExportStream(items, where)


def read_export(path: str | Path, max_bytes: int | None = DEFAULT_MAX_EXPORT_BYTES) -> list[ReviewRecord]:
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


def looks_like(content: Any) -> bool:
    """Whether ``content`` (parsed JSON) is a Label Studio export: a JSON list (of tasks, or of
    JSON-MIN annotations)."""
    return isinstance(content, list)


def parse(content: Any, *, where: str, fallback_time: str, keypoints: dict[str, list[str]] | None = None
          ) -> ParsedFile:
    """A Label Studio JSON / JSON-MIN export's records (:func:`parse_export`; every annotation
    carries its own time, so ``fallback_time`` and ``keypoints`` are not needed) and its container
    ``project-<n>`` when the tasks name their project (JSON exports do; JSON-MIN does not).

    Raises:
        ExportFormatError: see :func:`parse_export` (message prefixed with ``where``), or tasks from
            several projects.
    """
    try:
        records = parse_export(content)
    except ExportFormatError as exc:
        raise ExportFormatError(f"{where}: {exc}") from None
    projects = sorted({p for r in records if (p := r.get("project")) is not None})
    if len(projects) > 1:
        raise ExportFormatError(f"{where}: tasks from several Label Studio projects: {projects}")
    fmt = records[0]["format"] if records else "json"
    return {"tool": TOOL, "format": fmt, "records": records, "container": f"project-{projects[0]}" if projects else None}


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
