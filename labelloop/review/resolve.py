"""Resolve the label set: a human's review wins over the model, per image.

For every image of the workspace (status ok):

- reviewed (its latest non-cancelled review, :class:`labelloop.review.store.ReviewStore`):
  the human labels of that review, deletion markers left out; an empty review is a labeled
  negative (resolved with no labels);
- else routed ``auto_accept`` or ``qa_sample``: the current model's predictions kept by routing
  (score >= the category's low threshold), with action ``auto_accepted``; image-level tag
  pre-labels (``level: tag`` categories) are not box labels and are left out;
- else (waiting for review, or never routed): unresolved, left out of releases.

A model re-run therefore never changes, hides or duplicates a reviewed label (invariant 1).
Human labels keep their ``keypoints``, ``attributes`` and ``iscrowd`` (a crowd region, set only
when true; older HUMAN_LABELS tables without the column read as one object each). ``label_id`` is stable: ``lb-`` + 16 hex of sha256 over (origin, prediction_id or the human
annotation_id), and a human annotation keeps its id across updated versions.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence, cast

from labelloop.review.store import review_store
from labelloop.routing.confidence import AUTO, QA_SAMPLE, kept_predictions
from labelloop.tables.schemas import (
    HumanLabelRow,
    ImageRow,
    LabelRow,
    PredictionRow,
    ResolvedImageRow,
    ReviewQueueRow,
    ReviewRow,
)
from labelloop.workspace import repo
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.layout import Workspace


def label_id(origin: str, key: str) -> str:
    """``lb-`` + 16 hex of sha256(``origin`` + NUL + ``key``)."""
    return "lb-" + hashlib.sha256(f"{origin}\0{key}".encode()).hexdigest()[:16]


def resolve_labels(
    images: Sequence[ImageRow],
    queue: Sequence[ReviewQueueRow],
    predictions: Sequence[PredictionRow],
    latest_reviews: dict[str, ReviewRow],
    human_labels: Sequence[HumanLabelRow],
    config: ProjectConfig,
) -> tuple[list[LabelRow], list[ResolvedImageRow]]:
    """Returns ``(labels, resolved_images)`` as LABELS and RESOLVED_IMAGES rows, sorted by
    image_id then label_id. ``images``: IMAGES rows (only status ok are considered);
    ``queue``: REVIEW_QUEUE rows of all batches; ``predictions``: PREDICTIONS of the current
    model; ``human_labels``: rows of the latest reviews (deletion markers are skipped)."""
    route = {q["image_id"]: q for q in queue}
    preds: dict[str, list[PredictionRow]] = {}
    tag_categories = set(config.tag_categories)
    for p in kept_predictions(predictions, config):
        if p["category"] not in tag_categories:  # an image-level tag pre-label is no box label
            preds.setdefault(p["image_id"], []).append(p)
    humans: dict[str, list[HumanLabelRow]] = {}
    for h in human_labels:
        if h["action"] != "deleted":
            humans.setdefault(h["image_id"], []).append(h)
    labels: list[LabelRow] = []
    resolved: list[ResolvedImageRow] = []
    seen = set()
    for img in sorted(images, key=lambda r: r["image_id"] or ""):  # a rejected row may have no image_id
        iid = img["image_id"]
        if img.get("status") != "ok" or iid in seen:
            continue
        assert iid is not None  # an ok row has its sha256
        seen.add(iid)
        q: ReviewQueueRow | dict = route.get(iid, {})
        review = latest_reviews.get(iid)
        base = {"route": q.get("route"), "route_reason": q.get("reason"), "policy_id": q.get("policy_id")}
        rows: list[LabelRow]
        if review is not None:
            rows = [
                cast(LabelRow, {  # keypoints, attributes and iscrowd only when set (the writer fills null)
                 **base, "label_id": label_id("human", h["annotation_id"]), "image_id": iid,
                 "category": h["category"], "bbox": list(h["bbox"]), "mask": h.get("mask"), "score": None,
                 "origin": "human", "model_id": None, "checkpoint_sha256": None,
                 "prediction_id": h.get("source_prediction_id"), "annotation_id": h["annotation_id"],
                 "annotator": h["annotator"], "action": h["action"], "review_id": h["review_id"],
                 "reviewed_at": h["reviewed_at"],
                 # keypoints (x, y, v) and tool attributes (e.g. a rotated box's rotation) travel on
                 **{k: h[k] for k in ("keypoints", "attributes") if h.get(k) is not None},
                 # a crowd region (COCO iscrowd 1, CVAT is_crowd) stays one: COCO writes it as RLE, YOLO skips it
                 **({"iscrowd": True} if h.get("iscrowd") else {})})
                for h in humans.get(iid, []) if h["review_id"] == review["review_id"]
            ]
            resolved.append({"image_id": iid, "resolution": "reviewed", "n_labels": len(rows),
                             "review_id": review["review_id"], "route": q.get("route")})
        elif q.get("route") in (AUTO, QA_SAMPLE):
            rows = [
                cast(LabelRow, {  # no keypoints, attributes or iscrowd: the writer fills null
                 **base, "label_id": label_id("model", p["prediction_id"]), "image_id": iid,
                 "category": p["category"], "bbox": list(p["bbox"]), "mask": p.get("mask"), "score": p["score"],
                 "origin": "model", "model_id": p["model_id"], "checkpoint_sha256": p["checkpoint_sha256"],
                 "prediction_id": p["prediction_id"], "annotation_id": None, "annotator": None,
                 "action": "auto_accepted", "review_id": None, "reviewed_at": None})
                for p in preds.get(iid, [])
            ]
            resolved.append({"image_id": iid, "resolution": "auto_accepted", "n_labels": len(rows),
                             "review_id": None, "route": q.get("route")})
        else:
            continue
        labels.extend(sorted(rows, key=lambda r: r["label_id"]))
    return labels, resolved


def resolve_workspace(ws: Workspace, model_id: str) -> dict:
    """The ``labels`` asset: resolve the workspace's labels (human > auto-accepted model label,
    :func:`resolve_labels`) for ``model_id``'s predictions and write ``tables/labels/``.

    Returns ``{"labels", "images_resolved", "by_origin", "reviewed_images", "negatives"}``."""
    cfg = ws.config()
    store = review_store(ws)
    labels, resolved = resolve_labels(repo.all_images(ws), repo.all_queue(ws), repo.current_predictions(ws, model_id),
                                      store.latest_reviews(), store.current_human_labels(), cfg)
    repo.write_labels(ws, labels, resolved)
    by_origin: dict[str, int] = {}
    for lab in labels:
        by_origin[lab["origin"]] = by_origin.get(lab["origin"], 0) + 1
    return {"labels": len(labels), "images_resolved": len(resolved), "by_origin": by_origin,
            "reviewed_images": sum(1 for r in resolved if r["resolution"] == "reviewed"),
            "negatives": sum(1 for r in resolved if r["n_labels"] == 0)}


def resolve_tags(resolved: Sequence[ResolvedImageRow], human_tags: Mapping[str, Sequence[str]],
                 predictions: Sequence[PredictionRow], config: ProjectConfig) -> dict[str, list[str]]:
    """``image_id -> tags`` of the resolved images, human over model (progressive labeling,
    ``level: tag`` categories).

    - a reviewed image: its current review's tags (``human_tags``, from
      :meth:`labelloop.review.store.ReviewStore.current_tags`; absent: no tag answer);
    - an auto-accepted image (resolution ``auto_accepted``): the tag categories of its kept
      image-level tag pre-labels (``predictions``: the current model's; kept: score >= the
      category's ``low``, :func:`labelloop.routing.confidence.kept_predictions`), ``[]`` when it has
      none, which is the model's answer "none applies". With the ``opencv`` backend (no tag
      pre-label exists) auto-accepted images get no entry: no tag answer.

    Returns the tags sorted; {} when the project has no tag categories."""
    tags = set(config.tag_categories)
    if not tags:
        return {}
    out = {i: sorted(t) for i, t in human_tags.items()}
    auto = {r["image_id"] for r in resolved if r["resolution"] == "auto_accepted"}
    if not auto or config.prelabeler.backend == "opencv":
        return {i: t for i, t in out.items() if i not in auto}
    model: dict[str, set[str]] = {i: set() for i in auto}
    for p in kept_predictions(predictions, config):
        if p["image_id"] in auto and p["category"] in tags:
            model[p["image_id"]].add(p["category"])
    out.update({i: sorted(t) for i, t in model.items()})
    return out
