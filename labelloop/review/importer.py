"""Review import: a review file (Label Studio, CVAT, COCO, a YOLO dataset zip) into REVIEWS /
HUMAN_LABELS / REJECTS rows of the review store (:func:`import_file`, :func:`import_inbox`: the ``human_labels`` asset).

Identity: an annotation *version* is ``(source, task_id, tool_annotation_id, updated_at)`` (the
review key); :func:`review_id` hashes it. Importing is idempotent on that key, never on file
bytes, so a re-export where Label Studio rewrote unrelated fields adds nothing, and an edited
annotation (later ``updated_at``) becomes a new version of the same labels
(:func:`human_label_id` does not include ``updated_at``).

Every record is validated alone; a bad one is rejected (REJECTS row: file, ``"task T annotation
A"``, reason) and nothing of it is stored, while the others import. Boxes are converted from
Label Studio percent (and YOLO's normalized coordinates) to pixels of *our* image (its
EXIF-corrected ``width x height``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Sequence, cast

import labelloop
from labelloop import tables
from labelloop.formats.labelstudio import REGION_TYPE, TOOL, ExportFormatError, mapped_controls
from labelloop.formats.records import ReviewRecord, default_source, record_item
from labelloop.geometry.boxes import box_problem, clip, greedy_match, iou, ls_to_xyxy
from labelloop.geometry.masks import mask_iou
from labelloop.images.files import sha256_file
from labelloop.review import regions as regions_module
from labelloop.review.files import read_review_file
from labelloop.review.inbox import link_in_inbox, list_inbox, read_ledger, source_for, write_ledger_entry
from labelloop.review.matching import ImageIndex, MatchReject
from labelloop.review.regions import MaskBudget, RegionError, tag_answers, to_pixels
from labelloop.review.store import review_store
from labelloop.tables.schemas import (
    EXPORTED_PREDICTIONS,
    ExportedPredictionRow,
    HumanLabelRow,
    HumanTagRow,
    ImageRow,
    RejectRow,
    ReviewRow,
)
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace, WorkspaceError

MATCH_IOU = 0.5  # an unlinked region and an unlinked prediction at or above this IoU are the same object


def _hash16(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def review_id(source: str, task_id: str, tool_annotation_id: str, updated_at: str) -> str:
    """``"rv-"`` + 16 hex of sha256 over the review key joined by ``"\\x1f"``."""
    return "rv-" + _hash16(source, task_id, tool_annotation_id, updated_at)


def human_label_id(source: str, task_id: str, tool_annotation_id: str, part: str) -> str:
    """``"hl-"`` + 16 hex of sha256(source, task, annotation, part); ``part`` is the region id,
    ``"#<index>"`` for a region without id, or ``"del:<prediction_id>"`` for a deletion marker.
    Stable across updated versions of the same annotation."""
    return "hl-" + _hash16(source, task_id, tool_annotation_id, part)


# --------------------------------------------------------------------------- regions


def regions_px(rec: ReviewRecord, image: ImageRow, categories: set[str],
                keypoint_schema: dict[str, list[str]] | None = None, budget: MaskBudget | None = None,
                tag_categories: set[str] | None = None) -> list[dict]:
    """The record's regions as pixel regions of ``image`` (:func:`labelloop.review.regions.to_pixels`,
    CVAT masks decoded within the file's ``budget``; tag answers checked against
    ``tag_categories``); any problem rejects the record (``MatchReject``)."""
    try:
        return to_pixels(rec["regions"], image, categories, keypoint_schema, budget, tag_categories)
    except RegionError as exc:
        raise MatchReject(str(exc)) from None


def _seen_predictions(rec: ReviewRecord, image: ImageRow, exported: list[ExportedPredictionRow],
                      source: str) -> list[ExportedPredictionRow]:
    """EXPORTED_PREDICTIONS-like rows the reviewer saw for this image.

    The exported rows of the image; when they come from several exports (sources), those of the
    export sharing the most region ids with the annotation (all of them when none or a tie, one
    row per prediction_id).
    Without exported rows, the annotation's parent prediction regions (JSON export), with
    ``prediction_id = "ls-<source>:<parent_prediction_id>:<region_id>"``.
    """
    if exported:
        by_src: dict[str, list[ExportedPredictionRow]] = defaultdict(list)
        for row in exported:
            by_src[row["source"]].append(row)
        if len(by_src) > 1:
            ids = {r["region_id"] for r in rec["regions"] + rec.get("parent_regions", []) if r.get("region_id")}
            overlap = sorted(((len(ids & {r["region_id"] for r in rows}), s) for s, rows in by_src.items()),
                             reverse=True)
            if overlap[0][0] > 0 and overlap[0][0] > overlap[1][0]:
                return by_src[overlap[0][1]]
        # one row per prediction: a prediction shown in two exports (a review export and the
        # label-suspects export) was seen once, so it is accepted or deleted once
        once: dict[object, ExportedPredictionRow] = {}
        for k, row in enumerate(exported):
            once.setdefault(row["prediction_id"] or k, row)
        return list(once.values())
    out: list[ExportedPredictionRow] = []
    assert image["width"] is not None and image["height"] is not None  # an ok row: its size is known
    w, h = int(image["width"]), int(image["height"])
    for i, reg in enumerate(rec.get("parent_regions") or []):
        try:
            bbox = ls_to_xyxy(reg["value"], w, h)
        except ValueError:
            continue
        if box_problem(bbox, w, h):
            continue
        rid = reg.get("region_id") or f"#{i}"
        out.append(cast(ExportedPredictionRow, {  # as shown: no model_version, no mask
            "source": source,
            "image_id": image["image_id"],
            "region_id": reg.get("region_id"),
            "prediction_id": f"ls-{source}:{rec.get('parent_prediction_id')}:{rid}",
            "category": reg["category"],
            "bbox": clip(bbox, w, h),
            "score": reg.get("score"),
        }))
    return out


def _link(regions: list[dict], preds: list[ExportedPredictionRow]) -> dict[int, int]:
    """Region index -> prediction index: by region id, then greedy IoU >= 0.5 (same class first)."""
    links: dict[int, int] = {}
    by_rid = {p["region_id"]: j for j, p in enumerate(preds) if p.get("region_id") is not None}
    for i, reg in enumerate(regions):
        j = by_rid.get(reg["region_id"]) if reg["region_id"] is not None else None
        if j is not None and j not in links.values():
            links[i] = j
    for same_class in (True, False):
        ri = [i for i in range(len(regions)) if i not in links]
        pj = [j for j in range(len(preds)) if j not in links.values()]
        if not ri or not pj:
            break
        pairs = greedy_match(
            [regions[i]["bbox"] for i in ri],
            [preds[j]["bbox"] for j in pj],
            MATCH_IOU,
            [regions[i]["category"] for i in ri],
            [preds[j]["category"] for j in pj],
            same_class=same_class,
        )
        for a, b, _ in pairs:
            links[ri[a]] = pj[b]
    return links


# --------------------------------------------------------------------------- import


def _import_record(rec: ReviewRecord, key: tuple[str, str, str, str], *, index: ImageIndex,
                   exported_by_image: dict[str, list[ExportedPredictionRow]], categories: set[str], accept_iou: float,
                   import_sha256: str, file_name: str, keypoint_schema: dict[str, list[str]] | None = None,
                   import_run_id: str | None = None, budget: MaskBudget | None = None,
                   guidelines_by_image: Mapping[str, str] | None = None,
                   tag_categories: set[str] | None = None) -> tuple[ReviewRow, list[HumanLabelRow]]:
    source, task_id, ann_id, updated_at = key
    tool = rec.get("tool") or TOOL
    image = index.match(rec.get("image_ref"), rec.get("data_image_id"), allow_name=rec.get("allow_name", True),
                        by_stem=bool(rec.get("match_stem")))
    assert image["image_id"] is not None  # a matched image is an ok row: it has its sha256
    rid = review_id(*key)
    common = {"review_id": rid, "image_id": image["image_id"], "annotator": rec["annotator"], "tool": tool,
              "source": source, "reviewed_at": updated_at, "import_sha256": import_sha256,
              "import_run_id": import_run_id,
              # the guidelines the reviewer worked under: those of the export the task came from
              "guidelines_sha256": rec.get("data_guidelines_sha256")
              or (guidelines_by_image or {}).get(image["image_id"])}
    review: ReviewRow = {"review_id": rid, "source": source, "tool": tool, "task_id": task_id,
                         "tool_annotation_id": ann_id, "updated_at": updated_at, "image_id": image["image_id"],
                         "annotator": rec["annotator"], "was_cancelled": bool(rec.get("was_cancelled")), "n_regions": 0,
                         "import_sha256": import_sha256, "file": file_name, "import_run_id": import_run_id}
    if review["was_cancelled"]:
        return review, []  # a skip: the image stays in review
    regions = regions_px(rec, image, categories, keypoint_schema, budget, tag_categories)
    preds = _seen_predictions(rec, image, exported_by_image.get(image["image_id"], []), source)
    objects = [i for i, reg in enumerate(regions) if not reg.get("iscrowd")]  # a crowd region corrects no prediction
    links = {objects[a]: j for a, j in _link([regions[i] for i in objects], preds).items()}
    labels: list[HumanLabelRow] = []
    for i, reg in enumerate(regions):
        j = links.get(i)
        if j is None:
            action, pred_id = "added", None
        else:
            p = preds[j]
            shown_mask = p.get("mask")
            if reg.get("mask") and shown_mask:  # the reviewer was shown the mask: compare masks
                same = p["category"] == reg["category"] and _mask_iou(shown_mask, reg["mask"]) >= accept_iou
            else:
                same = p["category"] == reg["category"] and iou(p["bbox"], reg["bbox"]) >= accept_iou
            action, pred_id = ("accepted" if same else "corrected"), p["prediction_id"]
        part = reg["region_id"] if reg["region_id"] is not None else f"#{reg['index']}"
        labels.append(_label_row(common, human_label_id(source, task_id, ann_id, part), reg["category"],
                                 reg["bbox"], reg["region_id"], pred_id, action, reg))
    linked = set(links.values())
    for j in sorted((j for j in range(len(preds)) if j not in linked),
                    key=lambda j: cast(str, preds[j]["prediction_id"])):  # every prediction shown has an id
        p = preds[j]
        pid = cast(str, p["prediction_id"])
        labels.append(_label_row(common, human_label_id(source, task_id, ann_id, "del:" + pid),
                                 p["category"], p["bbox"], p.get("region_id"), pid, "deleted"))
    review["n_regions"] = len(regions)
    return review, labels


def _mask_iou(a: str, b: str) -> float:
    """Mask IoU; 0.0 when the masks cannot be compared (other sizes), so the label is 'corrected'."""
    try:
        return mask_iou(a, b)
    except ValueError:
        return 0.0


def _label_row(common: dict, annotation_id: str, category: str, bbox: Sequence[float], region_id: Any,
               pred_id: str | None, action: str, reg: dict | None = None) -> HumanLabelRow:
    reg = reg or {}
    attrs = reg.get("attributes")
    return cast(HumanLabelRow, {  # the object's columns, then the review's (common)
            "annotation_id": annotation_id, "category": category, "bbox": [float(v) for v in bbox],
            "mask": reg.get("mask"), "keypoints": reg.get("keypoints"), "occluded": bool(reg.get("occluded")),
            "truncated": False, "region_id": None if region_id is None else str(region_id),
            "attributes": json.dumps(attrs, sort_keys=True) if attrs else None,
            "source_prediction_id": pred_id, "action": action, "iscrowd": bool(reg.get("iscrowd"))} | common)


def import_review(
    records: Iterable[ReviewRecord],
    *,
    file_name: str,
    import_sha256: str,
    source: str,
    images: Sequence[ImageRow],
    exported: Sequence[ExportedPredictionRow],
    known_review_keys: set[tuple],
    categories: list[str],
    accept_iou: float = 0.95,
    keypoint_schema: dict[str, list[str]] | None = None,
    import_run_id: str | None = None,
    guidelines_by_image: Mapping[str, str] | None = None,
    tag_categories: list[str] | None = None,
) -> dict:
    """Import review records (:class:`~labelloop.formats.records.ReviewRecord`, from any reader).

    Args:
        records: the records of one file (Label Studio JSON or JSON-MIN, CVAT, COCO, YOLO), a list or
            an iterator read once (a streamed Label Studio export). ``tool``
            defaults to ``label-studio`` and ``allow_name`` (match an image by a unique bare file
            name as a last resort) to True when a record lacks them.
        file_name: export file name, written on REVIEWS and REJECTS rows.
        import_sha256: sha256 of the export file, for provenance only (never identity).
        source: review source, e.g. ``"label-studio/project-1"`` (:func:`labelloop.formats.records.default_source`).
        images: IMAGES rows of the workspace.
        exported: EXPORTED_PREDICTIONS rows (what reviewers were shown), any images.
        known_review_keys: ``(source, task_id, tool_annotation_id, updated_at)`` already imported.
        categories: the project's category names.
        accept_iou: a linked region of the same class with IoU >= this is "accepted".
        keypoint_schema: ``{category: [keypoint names]}`` (config ``keypoints``); keypoints of
            other categories, or unknown keypoint names, reject the record.
        tag_categories: the ``level: tag`` categories; a tag answer (Label Studio ``tags``
            Choices, CVAT ``<tag>``) naming an unknown or a box category rejects the record
            (:func:`labelloop.review.regions.tag_answers`).

    The value returned:

        ``{"reviews": [REVIEWS rows], "human_labels": [HUMAN_LABELS rows], "rejects": [REJECTS
        rows], "skipped": int}``. Actions: ``accepted`` / ``corrected`` (linked to a prediction by
        region id, else by box IoU >= 0.5, same class first; accepted = same class and IoU >=
        ``accept_iou``, mask IoU when the prediction was sent with its mask, else box IoU), ``added`` (no prediction), ``deleted``
        (a marker per shown prediction no region links to; its category, bbox and id). A cancelled
        annotation gives a REVIEWS row with ``was_cancelled`` and no labels; an empty result a
        REVIEWS row with ``n_regions`` 0 (a labeled negative) plus deletion markers. Bboxes are
        pixels of our image; ``mask`` (COCO RLE JSON), ``keypoints`` (flat x, y, v),
        ``attributes`` (JSON: e.g. ``rotation``) and ``iscrowd`` as
        :func:`labelloop.review.regions.to_pixels` gives them. A crowd region is never linked to a
        prediction (it is ``added``; a prediction it covers gets a deletion marker).
        ``import_run_id``: the Dagster run storing the import, written on every REVIEWS and
        HUMAN_LABELS row (None outside a run). ``guidelines_sha256`` on every HUMAN_LABELS row:
        the guidelines version the record's task was exported under when the file carries it
        (Label Studio task data), else ``guidelines_by_image[image_id]`` (the image's latest review
        export, :func:`labelloop.workspace.repo.exported_guidelines`), else None. Two label files of one YOLO dataset that match
        the same image contradict each other: both are rejected, naming each other.
    """
    index = ImageIndex(images)
    exported_by_image: dict[str, list[ExportedPredictionRow]] = defaultdict(list)
    for row in exported:
        exported_by_image[row["image_id"]].append(row)
    seen = set(known_review_keys)
    budget = MaskBudget()  # the file's allowance for decoding CVAT masks (regions.MAX_MASK_PIXELS_PER_FILE)
    out: dict[str, Any] = {"reviews": [], "human_labels": [], "rejects": [], "skipped": 0, "mapped_controls": [],
                           "human_tags": []}
    mapped: set[str] = set()
    yolo_images: dict[str, tuple[str, str]] = {}  # image_id -> (item, review_id) of its YOLO label file
    dropped: set[str] = set()
    for rec in records:
        item = record_item(rec)
        mapped.update(mapped_controls(rec))
        if rec.get("error"):
            out["rejects"].append({"file": file_name, "item": item, "reason": rec["error"]})
            continue
        key = (source, str(rec["task_id"]), str(rec["tool_annotation_id"]), str(rec["updated_at"]))
        if key in seen:
            out["skipped"] += 1
            continue
        try:
            review, labels = _import_record(
                rec, key, index=index, exported_by_image=exported_by_image, categories=set(categories),
                accept_iou=accept_iou, import_sha256=import_sha256, file_name=file_name,
                keypoint_schema=keypoint_schema, import_run_id=import_run_id, budget=budget,
                guidelines_by_image=guidelines_by_image,
                tag_categories=set(tag_categories or ()),
            )
        except MatchReject as exc:
            out["rejects"].append({"file": file_name, "item": item, "reason": str(exc)})
            continue
        if rec.get("tool") == "yolo":  # a dataset labels an image once: two label files of it contradict
            first = yolo_images.setdefault(review["image_id"], (item, review["review_id"]))
            if first[1] != review["review_id"]:
                why = (f"{first[0]} and {item} are both labels of image {review['image_id'][:12]} "
                       f"({review.get('task_id')}): which one holds is ambiguous")
                out["rejects"] += [{"file": file_name, "item": it, "reason": why} for it in (first[0], item)
                                   if it not in dropped]
                dropped.update((first[0], item))
                out["reviews"] = [r for r in out["reviews"] if r["review_id"] != first[1]]
                out["human_labels"] = [h for h in out["human_labels"] if h["review_id"] != first[1]]
                out["human_tags"] = [t for t in out["human_tags"] if t["review_id"] != first[1]]
                continue
        seen.add(key)
        out["reviews"].append(review)
        out["human_labels"].extend(labels)
        if not review["was_cancelled"]:  # checked by _import_record: its tags are known tag categories
            out["human_tags"].extend(tag_rows(review, tag_answers(rec["regions"], set(categories),
                                                                  set(tag_categories or ()))))
    out["mapped_controls"] = sorted(mapped)
    return out


def tag_rows(review: ReviewRow, tags: Sequence[str]) -> list[HumanTagRow]:
    """HUMAN_TAGS rows of one imported review: one per tag category in ``tags``
    (:func:`labelloop.review.regions.tag_answers`), with the review's identity and provenance;
    ``tag_id`` = ``"tg-"`` + 16 hex of sha256 over ``review_id + "|" + category``."""
    return [{"tag_id": "tg-" + hashlib.sha256(f"{review['review_id']}|{c}".encode()).hexdigest()[:16],
             "review_id": review["review_id"], "image_id": review["image_id"], "category": c,
             "annotator": review["annotator"], "tool": review["tool"], "source": review["source"],
             "reviewed_at": review["updated_at"], "import_sha256": review["import_sha256"],
             "import_run_id": review.get("import_run_id")} for c in tags]


def register_import_tasks(
    tasks: list, *, source: str, images: Sequence[ImageRow], file_name: str | None = None
) -> tuple[list[ExportedPredictionRow], list[RejectRow]]:
    """EXPORTED_PREDICTIONS rows for a Label Studio *import* file another process sent (tasks as
    in docs "Import pre-annotated data": ``{"data": {"image": ...}, "predictions": [{"model_version",
    "score", "result": [...]}]}``, or bare data dicts).

    Tasks are matched to ``images`` as in :func:`import_review`. Rows: ``region_id`` = the
    region's ``id``, ``prediction_id = "ls-<source>:<region_id>:<image_id[:12]>"`` (``#<p>.<r>``
    for a region without id), bbox in pixels of our image, score = the region's (else the
    prediction's), ``model_version`` from the prediction; a brush region (a mask, as labelloop sends
    masks) gives the mask's box and the mask. A task with an unknown / ambiguous
    image, a size mismatch or an invalid region is left out whole and reported in the REJECTS
    rows (``file`` = ``file_name`` or ``source``, item ``"import task <i>"``).

    Raises:
        ExportFormatError: ``tasks`` is not a list of objects.
    """
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ExportFormatError("a Label Studio import file is a JSON list of task objects")
    index = ImageIndex(images)
    rows: list[ExportedPredictionRow] = []
    rejects: list[RejectRow] = []
    seen_ids = set()
    for t_i, task in enumerate(tasks):
        data = task["data"] if isinstance(task.get("data"), dict) else task
        try:
            image = index.match(data.get("image"), data.get("image_id"))
            assert image["image_id"] is not None  # an ok row: its sha256 is known
            task_rows: list[ExportedPredictionRow] = []
            if not isinstance(task.get("predictions") or [], list):
                raise MatchReject("'predictions' is not a list")
            for p_i, pred in enumerate(task.get("predictions") or []):
                if not isinstance(pred, dict) or not isinstance(pred.get("result", []), list):
                    raise MatchReject(f"prediction {p_i} is not an object with a 'result' list")
                for r_i, reg in enumerate(pred.get("result") or []):
                    rtype = str(reg.get("type")).lower() if isinstance(reg, dict) else None
                    if rtype not in (REGION_TYPE, "brushlabels"):
                        raise MatchReject(f"prediction {p_i} region {r_i}: not a rectanglelabels or brushlabels region")
                    rid = None if reg.get("id") is None else str(reg["id"])
                    value = reg.get("value") if isinstance(reg.get("value"), dict) else {}
                    labels = value.get(rtype)
                    if labels is not None and (not isinstance(labels, list) or len(labels) != 1
                                               or not isinstance(labels[0], str)):
                        raise MatchReject(f"prediction {p_i} region {r_i}: {rtype} must be a list of one label name, "
                                      f"got {str(labels)[:80]}")
                    score = reg.get("score", pred.get("score"))
                    try:
                        score = None if score is None else float(score)
                    except (TypeError, ValueError):
                        raise MatchReject(f"prediction {p_i} region {r_i}: score {str(score)[:40]!r} is not a number") \
                            from None
                    rec = cast(ReviewRecord, {  # a record of one region: regions_px reads only its regions
                        "regions": [{"region_id": rid, "value": reg.get("value"),
                                     "kind": "brush" if rtype == "brushlabels" else "rectangle",
                                     "category": (labels or [None])[0],
                                     "original_width": reg.get("original_width"),
                                     "original_height": reg.get("original_height")}]})
                    cats = cast(set[str], {rec["regions"][0]["category"]} - {None})
                    (px,) = regions_px(rec, image, cats)
                    pid = f"ls-{source}:{rid if rid is not None else f'#{p_i}.{r_i}'}:{image['image_id'][:12]}"
                    task_rows.append({"source": source, "image_id": image["image_id"],
                                      "region_id": None if rid is None else str(rid), "prediction_id": pid,
                                      "category": px["category"], "bbox": px["bbox"],
                                      "score": score, "model_version": None if pred.get("model_version") is None
                                      else str(pred["model_version"]),
                                      "mask": px["mask"] if rtype == "brushlabels" else None})
        except MatchReject as exc:
            rejects.append({"file": file_name or source, "item": f"import task {t_i}", "reason": str(exc)})
            continue
        for row in task_rows:
            if row["prediction_id"] not in seen_ids:
                seen_ids.add(row["prediction_id"])
                rows.append(row)
    return rows, rejects


# What a hostile or malformed export can raise past the parsers' own checks; each rejects the file
# alone (with its name and the error), never the rest of the inbox. MemoryError included: a file
# that asks for more memory than there is is refused, not retried.
MALFORMED = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError, MemoryError)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _failed(path: Path | str, error: str, read_again: bool = False) -> dict:
    """The summary of a file rejected whole (``error``: one line naming it and the reason;
    ``read_again``: the reason is not one the readers diagnose, so the inbox reads it again)."""
    return {"file": str(path), "error": _one_line(error), "reviews": 0, "labels": 0, "rejects": 0, "skipped": 0,
            "import_id": None, **({"read_again": True} if read_again else {})}


def _noting_projects(records: Iterable[ReviewRecord], projects: set[str]) -> Iterator[ReviewRecord]:
    """``records`` as they are, adding each record's ``project`` to ``projects`` as it passes."""
    for rec in records:
        if rec.get("project") is not None:
            projects.add(str(rec["project"]))
        yield rec


def import_file(ws: Workspace, path: Path, source: str | None = None, dry_run: bool = False,
                run_id: str | None = None, *, sha256: str | None = None) -> dict:
    """Import one review file into the review store: Label Studio JSON / JSON-MIN, CVAT for images
    1.1 XML, COCO JSON or a YOLO dataset zip (:func:`labelloop.review.files.read_review_file`, format read from the
    content; files over ``review.max_export_mb`` are refused whole). The file is always read (an
    explicit ``labelloop import-review FILE``); :func:`import_inbox` skips unchanged inbox files.

    Idempotent by annotation identity (source, task, annotation, updated_at). A malformed file
    (damaged zip included) is reported (``error``, one line naming the file) and leaves the store
    untouched; bad tasks are rejected one by one. A symbolic link in the review inbox, or a path
    below a linked folder there, is refused without opening its target
    (:func:`labelloop.review.inbox.link_in_inbox`). A Label Studio export is streamed task by
    task, so memory holds one task, the rows being imported and the store's known review keys.
    ``dry_run`` computes the same summary without storing anything. The source is ``source``,
    else the one named when the file was copied in, else the format's default source
    (``label-studio/project-N``, ``cvat/task-N``, ``coco/<stem>``, ``yolo/<zip stem>``,
    :func:`labelloop.formats.records.default_source`), except that a file whose reviews were imported
    before keeps the source they were imported under. ``run_id``: the Dagster run
    importing it, stored on every new REVIEWS / HUMAN_LABELS row as ``import_run_id``.
    ``sha256``: the file's sha256 when the caller has it (else it is computed).

    Returns:
        ``{"file", "source", "format", "reviews", "labels", "rejects", "skipped", "reject_reasons",
        "warnings", "import_id"}`` (``import_id``: the store commit made, or None), or for a file
        rejected whole ``{"file", "error", "reviews": 0, ..., "import_id": None}`` plus
        ``"read_again": True`` when the error is not one the readers diagnose (an I/O error, an
        exception a parser did not foresee): :func:`import_inbox` then reads the file again.

    Raises:
        OSError: the review store cannot be written (or another error of the store's); nothing of
            the file is then stored.
    """
    refused = link_in_inbox(ws, Path(path))
    if refused is not None:
        return _failed(path, refused)
    ws_path = Path(path).resolve()
    if ws_path.is_relative_to(ws.root):
        ws_path = ws.resolve_inside(ws.relative(ws_path))
    cfg = ws.config()
    store = review_store(ws)
    in_inbox = ws_path.is_relative_to(ws.review_inbox.resolve())
    known_src = source or (source_for(ws, ws_path) if in_inbox else None) or store.source_of_file(str(path))
    try:
        digest = sha256 or sha256_file(ws_path)
    except OSError as exc:
        return _failed(path, f"{path}: cannot be read ({exc})", read_again=True)
    guess: str | None = None
    for attempt in range(2):  # a second read only when a Label Studio stream named its project late
        try:
            parsed = read_review_file(ws_path, max_bytes=int(cfg.review.max_export_mb * 2**20),
                                      keypoints=cfg.keypoint_schema(), inbox=ws.review_inbox, stream=True)
        except (ExportFormatError, UnicodeDecodeError) as exc:
            return _failed(path, str(exc))
        except OSError as exc:  # perhaps passing (a file still being written, a share gone away)
            return _failed(path, str(exc), read_again=True)
        except MALFORMED as exc:  # malformed beyond the parser's checks
            return _failed(path, f"{path}: not a usable review export ({type(exc).__name__}: {exc})", read_again=True)
        src = known_src or guess or parsed["default_source"]
        projects: set[str] = set()

        with ws.lock():
            try:
                result = import_review(
                    _noting_projects(parsed["records"], projects), file_name=str(path), import_sha256=digest,
                    source=src, images=repo.all_images(ws), exported=repo.all_exported(ws),
                    known_review_keys=store.known_review_keys(), categories=cfg.category_names,
                    accept_iou=cfg.qa.accept_iou, keypoint_schema=cfg.keypoint_schema(), import_run_id=run_id,
                    guidelines_by_image=repo.exported_guidelines(ws),
                    tag_categories=cfg.tag_categories,
                )
            except (ExportFormatError, UnicodeDecodeError) as exc:  # a streamed file, malformed part-way
                return _failed(path, str(exc))
            except OSError as exc:
                return _failed(path, str(exc), read_again=True)
            except MALFORMED as exc:
                return _failed(path, f"{path}: not a usable review export ({type(exc).__name__}: {exc})",
                               read_again=True)
            finally:
                close = getattr(parsed["records"], "close", None)
                if close is not None:
                    close()
            if known_src is None and parsed["format"] == TOOL and attempt == 0:
                final = default_source(TOOL, ws_path, f"project-{min(projects)}" if len(projects) == 1 else None,
                                       ws.review_inbox)
                if final != src:  # the first record named no project, a later one did: read again under it
                    guess = final
                    continue
            import_id = None
            if (result["reviews"] or result["rejects"]) and not dry_run:
                # identity of what is stored: its reviews and rejects, never the file's bytes
                keys = sorted(r["review_id"] for r in result["reviews"]) + sorted(
                    f"{r['item']}\x1f{r['reason']}" for r in result["rejects"]) + [src]
                import_id = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
                store.commit_import(import_id, result)
        break
    return {"file": str(path), "source": src, "format": parsed["format"], "reviews": len(result["reviews"]),
            "labels": len(result["human_labels"]),
            "rejects": len(result["rejects"]), "skipped": result["skipped"],
            "reject_reasons": [f"{r['item']}: {r['reason']}" for r in result["rejects"]],
            "warnings": (_source_warnings(store, parsed["format"], bool(projects), result, src) if source is None
                         else []) + [f"Label Studio control {m} (mapped by region type: the export's labeling "
                                     "config names its controls otherwise)" for m in result["mapped_controls"]],
            "import_id": import_id}


def _source_warnings(store, fmt: str, names_project: bool, result: dict, src: str) -> list[str]:
    """A Label Studio export without a project id (JSON-MIN) whose images were reviewed under
    another Label Studio source: most likely the same project, which needs the same ``--source``
    (else its reviews count as a second source's and supersede the first's)."""
    if fmt != "label-studio" or names_project:
        return []
    mine = {r["image_id"] for r in result["reviews"]}
    others: dict[str, int] = {}
    for iid, row in store.latest_reviews().items():
        if iid in mine and row["source"] != src and row["source"].startswith(TOOL + "/"):
            others[row["source"]] = others.get(row["source"], 0) + 1
    return [f"{n} of its images were reviewed before under {other}; this file names no Label Studio project "
            f"(JSON-MIN), so it was imported as {src}: if it is the same project, import it again with "
            f"--source {other}" for other, n in sorted(others.items())]


def _settings_key(ws: Workspace) -> str:
    """16 hex of sha256 over what decides how a review file imports besides its bytes and source:
    the project's categories, keypoints, accept IoU and export size limit, the mask budget, and
    labelloop's version (its readers)."""
    cfg = ws.config()
    body = {"categories": cfg.category_names, "keypoints": cfg.keypoint_schema(), "accept_iou": cfg.qa.accept_iou,
            "max_export_mb": cfg.review.max_export_mb, "mask_pixels": regions_module.MAX_MASK_PIXELS_PER_FILE,
            "labelloop": labelloop.__version__}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _images_key(ws: Workspace) -> str:
    """16 hex of sha256 over the workspace's images as review matching sees them (id, uri,
    source path, size, status): a file whose records were rejected is read again when it changes."""
    rows = sorted((str(r.get("image_id")), str(r.get("uri")), str(r.get("source_path")), str(r.get("width")),
                   str(r.get("height")), str(r.get("status"))) for r in repo.all_images(ws))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


class _LedgerCheck:
    """Whether a review-inbox ledger entry still holds for a file (see :func:`import_inbox`); the
    workspace's images key and the store's commits are read once, and only when needed."""

    def __init__(self, ws: Workspace):
        self.ws, self.ledger, self.settings = ws, read_ledger(ws), _settings_key(ws)
        self._images: str | None = None
        self._ids: set[str] | None = None

    def images_key(self) -> str:
        if self._images is None:
            self._images = _images_key(self.ws)
        return self._images

    def committed(self) -> set[str]:
        if self._ids is None:
            self._ids = set(review_store(self.ws).import_ids())
        return self._ids

    def key(self, path: Path, digest: str) -> dict:
        return {"sha256": digest, "source": source_for(self.ws, path), "settings": self.settings}

    def current(self, rel: str, key: dict) -> bool:
        entry = self.ledger.get(rel)
        return (entry is not None and entry.get("key") == key
                and (entry.get("images") is None or entry["images"] == self.images_key())
                and (entry.get("import_id") is None or entry["import_id"] in self.committed()))


def pending_inbox_files(ws: Workspace, candidates: set[str] | None = None) -> list[str]:
    """Workspace-relative paths of the review-inbox files :func:`import_inbox` would read now
    (new, changed, or read under other settings; the ledger rule of :func:`import_inbox`),
    among ``candidates`` when given. Reads each candidate's bytes (sha256), nothing else: a
    sensor asks this before launching a run, so files the CLI already imported start no run.
    A file that cannot be read counts as pending (the import reports it)."""
    check = _LedgerCheck(ws)
    out = []
    for p in list_inbox(ws).files:
        rel = ws.relative(p)
        if candidates is not None and rel not in candidates:
            continue
        try:
            key = check.key(p, sha256_file(p))
        except OSError:
            out.append(rel)
            continue
        if not check.current(rel, key):
            out.append(rel)
    return out


def import_inbox(ws: Workspace, run_id: str | None = None) -> dict:
    """Import every file of the review inbox that changed since it was last read (``human_labels``;
    ``run_id``: the Dagster run doing it, see :func:`import_file`).

    Each file is read on its own: whatever one file raises is its own error, never the others'.
    Symbolic links are refused without being opened (:func:`labelloop.review.inbox.list_inbox`).
    What each file was read as is remembered in ``.labelloop/review_inbox.json``
    (:func:`labelloop.review.inbox.read_ledger`), keyed by its sha256, the source named for it
    (``import-review --source``) and the settings it was read under (categories, keypoints,
    accept IoU, size limit, mask budget, labelloop's version); a file is read again only when one
    of them changed, when some of its records were rejected and the workspace's images changed
    since, or when its commit is gone from the review store. A file
    rejected whole (malformed, a damaged zip) is so remembered: reported on every run, read again
    only once its bytes change. A failure the readers do not diagnose (an I/O error, the store
    cannot be written, an exception a parser did not foresee) is reported and the file read again
    next time.

    Returns:
        ``{"files": [a summary per inbox file: :func:`import_file`'s for a file read, and for an
        unchanged one ``{"file", "unchanged": True, "source", "format", "reviews": 0, "labels": 0,
        "rejects": 0, "skipped": its annotations imported before, "error" when it was rejected}``],
        "unchanged": [workspace-relative paths not read again], "refused": [one line per refused
        link], "new_reviews", "skipped", "rejects": int, "errors": [one line per file rejected
        whole, read now or unchanged, and per refused link]}``.
    """
    listing = list_inbox(ws)
    check = _LedgerCheck(ws)
    present = {ws.relative(p) for p in listing.files}

    files: list[dict] = []
    unchanged: list[str] = []
    errors: list[str] = []
    for p in listing.files:
        rel = ws.relative(p)
        try:
            digest = sha256_file(p)
        except OSError as exc:
            files.append(_failed(p, f"{p}: cannot be read ({exc}); it is read again next time", read_again=True))
            errors.append(f"{files[-1]['file']}: {files[-1]['error']}")
            continue
        key = check.key(p, digest)
        entry = check.ledger.get(rel)
        if check.current(rel, key):
            assert entry is not None
            unchanged.append(rel)
            last: dict = entry["summary"] if isinstance(entry.get("summary"), dict) else {}
            files.append({"file": str(p), "unchanged": True, "source": last.get("source"), "format": last.get("format"),
                          "reviews": 0, "labels": 0, "rejects": 0,
                          "skipped": int(last.get("reviews") or 0) + int(last.get("skipped") or 0),
                          "reject_reasons": [], "warnings": [], "import_id": entry.get("import_id"),
                          **({"error": entry["error"]} if entry.get("error") else {})})
            if entry.get("error"):
                errors.append(f"{p}: {entry['error']} (unchanged since it was rejected: not read again)")
            continue
        try:
            summary = import_file(ws, p, run_id=run_id, sha256=digest)
        except Exception as exc:  # noqa: BLE001 - one file's failure never stops the others
            summary = _failed(p, f"{p}: not imported ({type(exc).__name__}: {exc}); it is read again next time",
                              read_again=True)
        files.append(summary)
        if summary.get("error"):
            errors.append(f"{summary['file']}: {summary['error']}")
        remembered = None if summary.get("read_again") else {
            "key": key, "images": check.images_key() if summary["rejects"] else None,
            "import_id": summary.get("import_id"), "error": summary.get("error"),
            "summary": {k: summary.get(k) for k in ("source", "format", "reviews", "labels", "rejects", "skipped")}}
        try:
            with ws.lock():
                write_ledger_entry(ws, rel, remembered, keep=present)
        except OSError as exc:
            errors.append(f"{rel}: {repo.review_inbox_ledger_path(ws)} cannot be written ({_one_line(str(exc))}): "
                          "the file is read again next time")
    errors.extend(listing.refused)
    return {"files": files, "unchanged": unchanged, "refused": listing.refused,
            "new_reviews": sum(f["reviews"] for f in files), "skipped": sum(f["skipped"] for f in files),
            "rejects": sum(f["rejects"] for f in files), "errors": errors}


def register_export(ws: Workspace, path: Path, source: str) -> dict:
    """Record a Label Studio *import* file sent by another process as predictions we exported,
    so reviews of those tasks link to them (``tables/review_export/registered/``)."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: cannot read a Label Studio import file: {exc}") from None
    if not isinstance(tasks, list):
        raise WorkspaceError(f"{path}: a Label Studio import file is a JSON list of tasks")
    rows, rejects = register_import_tasks(tasks, source=source, images=repo.all_images(ws))
    tables.write_rows(rows, EXPORTED_PREDICTIONS, repo.registered_export_path(ws, source))
    return {"predictions": len(rows), "rejects": [f"{r['item']}: {r['reason']}" for r in rejects]}
