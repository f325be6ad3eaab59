"""Label-error detection with cleanlab's object-detection scores; suspects go to review.

For every resolved image, the resolved labels (human or auto-accepted) are compared with the
current model's predictions (all of them, scores included) by cleanlab
(``cleanlab.object_detection.rank``; Tkachenko et al., "ObjectLab: Automated Diagnosis of
Mislabeled Images in Object Detection Data", 2023):

- ``compute_swap_box_scores``: per label box, low when the box probably has the wrong class
  (issue ``swapped``);
- ``compute_badloc_box_scores``: per label box, low when it is probably badly located
  (issue ``badly_located``);
- ``compute_overlooked_box_scores``: per confident predicted box, low when an object is probably
  missing from the labels (issue ``missing``; the suspect carries the model's box and class);
- ``get_label_quality_scores``: one score per image, used to rank images.

A box score below ``qa.label_error_threshold`` (default 0.25) makes a suspect: the scores are in
[0, 1], about 1 for a label its confident prediction agrees with; a label whose class disagrees
with a confident prediction, or that overlaps it at IoU ~0.25, scores near 0.1.
Suspects are kept in ``tables/qa/label_suspects.parquet`` and the worst ``qa.max_suspects``
images go to review as ``review_out/label-suspects/tasks.json`` (a Label Studio import file
whose pre-annotations are the current labels). When a reviewer saves such an image after the
suspect was raised and the same issue is still found on the same object (same class, IoU >=
0.9), the reviewer said "not an error": the suspect becomes ``dismissed`` and is never raised
again. A suspect the reviewer fixed is simply not found again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections import defaultdict
from typing import Mapping, Sequence, cast

import numpy as np

from labelloop.formats.labelstudio import build_import_tasks
from labelloop.geometry.boxes import iou
from labelloop.tables.schemas import ExportedPredictionRow, ImageRow, LabelRow, LabelSuspectRow, PredictionRow

ISSUES = ("swapped", "badly_located", "missing")
SAME_OBJECT_IOU = 0.9


def suspect_id(image_id: str, issue: str, category: str, bbox) -> str:
    """``sx-`` + 16 hex of sha256(image, issue, class, bbox rounded to 1 px)."""
    key = f"{image_id}\0{issue}\0{category}\0" + ",".join(str(round(float(v))) for v in bbox)
    return "sx-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _cleanlab_inputs(image_ids: list[str], labels_by_image: dict[str, list[LabelRow]],
                     preds_by_image: dict[str, list[PredictionRow]], cat_index: dict[str, int]
                     ) -> tuple[list[dict], list[np.ndarray]]:
    k = len(cat_index)
    labels, predictions = [], []
    for image_id in image_ids:
        labs = labels_by_image.get(image_id, [])
        labels.append({"bboxes": np.array([lab["bbox"] for lab in labs], dtype=float).reshape(-1, 4),
                       "labels": np.array([cat_index[lab["category"]] for lab in labs], dtype=int),
                       "image_name": image_id})
        per_class = np.empty(k, dtype=object)
        for c in range(k):
            per_class[c] = np.zeros((0, 5))
        rows: dict[int, list] = defaultdict(list)
        for p in preds_by_image.get(image_id, []):
            rows[cat_index[p["category"]]].append(list(p["bbox"]) + [float(p["score"])])
        for c, r in rows.items():
            per_class[c] = np.array(r, dtype=float)
        predictions.append(per_class)
    return labels, predictions


def find_suspects(labels: Sequence[LabelRow], predictions: Sequence[PredictionRow], image_ids: list[str],
                  categories: list[str], threshold: float = 0.25) -> list[LabelSuspectRow]:
    """Suspect labels on ``image_ids``, most suspect first.

    Args:
        labels: resolved labels (label_id, image_id, category, bbox xyxy pixels).
        predictions: the current model's predictions (image_id, category, bbox, score in [0, 1]).
        image_ids: resolved images to check (negatives included).
        categories: the project's classes (others are ignored).
    Returns:
        ``[{"suspect_id", "image_id", "label_id" (None for missing), "issue", "category", "bbox",
        "score", "image_score"}]`` sorted by score, then image_id.
    """
    from cleanlab.object_detection import rank  # heavy (pandas, scikit-learn): only when label errors are scored

    cat_index = {c: i for i, c in enumerate(categories)}
    lab_by: dict[str, list[LabelRow]] = defaultdict(list)
    for lab in labels:
        if lab["category"] in cat_index:
            lab_by[lab["image_id"]].append(lab)
    pred_by: dict[str, list[PredictionRow]] = defaultdict(list)
    for p in predictions:
        if p["category"] in cat_index:
            pred_by[p["image_id"]].append(p)
    ids = [i for i in sorted(set(image_ids)) if lab_by.get(i) or pred_by.get(i)]
    if not ids:
        return []
    cl_labels, cl_preds = _cleanlab_inputs(ids, lab_by, pred_by, cat_index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image_scores = rank.get_label_quality_scores(cl_labels, cl_preds, verbose=False)
        swap = rank.compute_swap_box_scores(labels=cl_labels, predictions=cl_preds)
        badloc = rank.compute_badloc_box_scores(labels=cl_labels, predictions=cl_preds)
        overlooked = rank.compute_overlooked_box_scores(labels=cl_labels, predictions=cl_preds)
    out: list[LabelSuspectRow] = []  # without status and found_at (merge_suspects sets them)
    for n, image_id in enumerate(ids):
        labs = lab_by.get(image_id, [])
        img_score = float(image_scores[n])
        for issue, scores in (("swapped", swap[n]), ("badly_located", badloc[n])):
            for j, s in enumerate(np.asarray(scores, dtype=float).ravel()):
                if np.isfinite(s) and s < threshold and j < len(labs):
                    lab = labs[j]
                    out.append(cast(LabelSuspectRow, {
                        "suspect_id": suspect_id(image_id, issue, lab["category"], lab["bbox"]),
                        "image_id": image_id, "label_id": lab.get("label_id"), "issue": issue,
                        "category": lab["category"], "bbox": [float(v) for v in lab["bbox"]],
                        "score": float(s), "image_score": img_score}))
        # overlooked scores follow the prediction order of _cleanlab_inputs: by class, then input order
        flat = [p for c in range(len(categories)) for p in pred_by.get(image_id, [])
                if cat_index[p["category"]] == c]
        for j, s in enumerate(np.asarray(overlooked[n], dtype=float).ravel()):
            if np.isfinite(s) and s < threshold and j < len(flat):
                p = flat[j]
                out.append(cast(LabelSuspectRow, {
                    "suspect_id": suspect_id(image_id, "missing", p["category"], p["bbox"]),
                    "image_id": image_id, "label_id": None, "issue": "missing", "category": p["category"],
                    "bbox": [float(v) for v in p["bbox"]], "score": float(s), "image_score": img_score}))
    return sorted(out, key=lambda s: (s["score"], s["image_id"], s["suspect_id"]))


def _same(a: LabelSuspectRow, b: LabelSuspectRow) -> bool:
    return (a["image_id"] == b["image_id"] and a["issue"] == b["issue"] and a["category"] == b["category"]
            and iou(a["bbox"], b["bbox"]) >= SAME_OBJECT_IOU)


def merge_suspects(found: list[LabelSuspectRow], previous: list[LabelSuspectRow],
                   reviewed_at: Mapping[str, str | None], now: str | None = None) -> list[LabelSuspectRow]:
    """LABEL_SUSPECTS rows after this run: dismissed ones are remembered, new ones are ``open``.

    Args:
        found: :func:`find_suspects` of this run.
        previous: LABEL_SUSPECTS rows stored by earlier runs.
        reviewed_at: ``image_id -> updated_at`` of each image's latest review (ISO 8601).
    A previous suspect is ``dismissed`` when it was already dismissed, or when its image was
    reviewed after it was found and this run finds the same issue on the same object again (the
    reviewer kept the label). A found suspect matching a dismissed one is not raised again.
    """
    now = now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    dismissed = []
    for p in previous:
        if p.get("status") == "dismissed":
            dismissed.append(p)
            continue
        again = any(_same(p, f) for f in found)
        later = reviewed_at.get(p["image_id"])
        if again and later is not None and _ts(later) > _ts(p.get("found_at")):
            dismissed.append(p | {"status": "dismissed"})
    rows = [d.copy() for d in dismissed]
    prev_open = {p["suspect_id"]: p for p in previous if p.get("status") == "open"}
    for f in found:
        if any(_same(d, f) for d in dismissed):
            continue
        first = prev_open.get(f["suspect_id"]) or next((p for p in previous if p.get("status") == "open"
                                                          and _same(p, f)), None)
        rows.append({**f, "status": "open", "found_at": (first.get("found_at") if first else None) or now})
    return sorted(rows, key=lambda r: (r["status"] != "open", r["score"], r["image_id"], r["suspect_id"]))


def _ts(value) -> str:
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
        return t.astimezone(dt.timezone.utc).isoformat()
    except ValueError:
        return ""


def suspect_review_tasks(suspects: list[LabelSuspectRow], images: Sequence[ImageRow], labels: Sequence[LabelRow],
                         max_images: int, model_version: str = "labelloop-current-labels"
                         ) -> tuple[list[dict], list[ExportedPredictionRow], list[str]]:
    """Label Studio tasks for the images of the worst open suspects, pre-annotated with their
    current labels (region id = the label's prediction_id, else its label_id), plus the
    EXPORTED_PREDICTIONS rows (source ``labelloop/label-suspects``) and the image_ids sent."""

    chosen: list[str] = []
    for s in suspects:
        if s["status"] == "open" and s["image_id"] not in chosen:
            chosen.append(s["image_id"])
        if len(chosen) >= max_images:
            break
    wanted = set(chosen)
    rows = [r for r in images if r["image_id"] in wanted and r.get("status") == "ok"]
    preds = [cast(PredictionRow, {  # a label shown as a prediction: no mask, model or run
        "prediction_id": lab.get("prediction_id") or lab["label_id"], "image_id": lab["image_id"],
        "category": lab["category"], "bbox": lab["bbox"],
        "score": float(score) if (score := lab.get("score")) is not None else 1.0})
        for lab in labels if lab["image_id"] in wanted]
    tasks, exported = build_import_tasks(rows, preds, model_version=model_version, batch="label-suspects")
    order = {i: k for k, i in enumerate(chosen)}
    tasks.sort(key=lambda t: order.get(t["data"]["image_id"], 0))
    return tasks, exported, chosen
