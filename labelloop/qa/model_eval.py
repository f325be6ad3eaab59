"""Model vs human on reviewed images: COCO AP, AP50, AP75 with pycocotools, for boxes and masks.

The reviewed images' human labels are the ground truth, the pre-labeler's predictions (with
scores) the detections; ``pycocotools.cocoeval.COCOeval`` runs the COCO protocol (IoU 0.50:0.95,
101 recall points, maxDets 100, all areas; https://cocodataset.org/#detection-eval). A reviewed
image with no human label is a labeled negative: every detection on it is a false positive.

Masks (``iouType="segm"``) are evaluated only on reviewed images whose human labels all carry a
mask (a box-only review cannot score masks); undefined figures are ``None`` with the reason.
This measures the pre-labeler; it informs routing and never blocks a release.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from labelloop.geometry.boxes import xyxy_to_xywh
from labelloop.tables.schemas import HumanLabelRow, PredictionRow

METRICS = ("AP", "AP50", "AP75")


def _rle(mask):
    if mask is None:
        return None
    return json.loads(mask) if isinstance(mask, str) else mask


def coco_ap(truths: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]],
            images: dict[str, tuple[int, int]], categories: list[str], iou_type: str = "bbox") -> dict:
    """COCO AP / AP50 / AP75 overall and per class, and PR curves at IoU 0.5.

    Args:
        truths: human labels (image_id, category, bbox xyxy pixels, mask RLE JSON or None).
        predictions: model predictions (image_id, category, bbox, score, mask).
        images: ``image_id -> (width, height)`` of the evaluated (reviewed) images; labels and
            predictions of other images are ignored.
        iou_type: ``"bbox"`` or ``"segm"``.
    Returns:
        ``{"iou_type", "images", "truths", "predictions", "AP", "AP50", "AP75", "undefined",
        "per_class": {cat: {"AP", "AP50", "AP75", "truths", "undefined"}}, "pr_curves": {cat:
        {"recall": [101 floats], "precision": [...]}}}``; AP values in [0, 1], ``None`` when
        undefined (no ground truth).
    """

    ids = {iid: k + 1 for k, iid in enumerate(sorted(images))}
    cat_ids = {c: k + 1 for k, c in enumerate(categories)}
    segm = iou_type == "segm"
    gts = [t for t in truths if t["image_id"] in ids and t["category"] in cat_ids]
    dts = [p for p in predictions if p["image_id"] in ids and p["category"] in cat_ids]
    if segm:
        dts = [p for p in dts if p.get("mask")]
    out: dict[str, Any] = {"iou_type": iou_type, "images": len(ids), "truths": len(gts), "predictions": len(dts),
                           "AP": None, "AP50": None, "AP75": None, "undefined": None, "per_class": {},
                           "pr_curves": {}}
    if not gts:
        out["undefined"] = "no ground-truth label on the evaluated images"
        return out
    anns = []
    for k, t in enumerate(gts):
        a: dict[str, Any] = {"id": k + 1, "image_id": ids[t["image_id"]], "category_id": cat_ids[t["category"]],
                             "bbox": xyxy_to_xywh(t["bbox"]), "iscrowd": 1 if t.get("iscrowd") else 0}  # crowd: ignore
        a["area"] = float(a["bbox"][2] * a["bbox"][3])
        if segm:
            a["segmentation"] = _rle(t["mask"])
        anns.append(a)
    dataset = {"images": [{"id": ids[i], "width": int(w), "height": int(h)} for i, (w, h) in sorted(images.items())],
               "annotations": anns, "categories": [{"id": v, "name": c} for c, v in cat_ids.items()]}
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if dts:
            res = []
            for p in dts:
                r: dict[str, Any] = {"image_id": ids[p["image_id"]], "category_id": cat_ids[p["category"]],
                                     "bbox": xyxy_to_xywh(p["bbox"]), "score": float(p["score"])}
                if segm:
                    r["segmentation"] = _rle(p["mask"])
                    r.pop("bbox")
                res.append(r)
            dt = gt.loadRes(res)
            ev = COCOeval(gt, dt, iouType=iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats, precision = ev.stats, ev.eval["precision"]  # precision: [T, R, K, A, M]
            rec_thrs = ev.params.recThrs
        else:
            stats, precision, rec_thrs = None, None, np.linspace(0, 1, 101)
    if stats is None:
        out.update(AP=0.0, AP50=0.0, AP75=0.0)
    else:
        out.update({m: (float(stats[i]) if stats[i] >= 0 else None) for i, m in enumerate(METRICS)})
    n_truth = {c: sum(1 for t in gts if t["category"] == c) for c in categories}
    for c, k in cat_ids.items():
        row: dict[str, Any] = {"truths": n_truth[c], "AP": None, "AP50": None, "AP75": None, "undefined": None}
        if n_truth[c] == 0:
            row["undefined"] = "no ground-truth label of this class"
        elif precision is None:
            row.update(AP=0.0, AP50=0.0, AP75=0.0)
        else:
            p = precision[:, :, k - 1, 0, -1]  # all areas, maxDets 100
            row["AP"] = float(np.mean(p[p > -1])) if np.any(p > -1) else None
            for name, thr in (("AP50", 0), ("AP75", 5)):
                q = p[thr]
                row[name] = float(np.mean(q[q > -1])) if np.any(q > -1) else None
            curve = precision[0, :, k - 1, 0, -1]
            out["pr_curves"][c] = {"recall": [round(float(r), 4) for r in rec_thrs],
                                   "precision": [round(float(max(v, 0.0)), 6) for v in curve]}
        out["per_class"][c] = row
    return out


def model_vs_human(truths: Sequence[HumanLabelRow], predictions: Sequence[PredictionRow],
                   images: dict[str, tuple[int, int]], categories: list[str]) -> dict:
    """Box and mask COCO evaluation of the pre-labeler on reviewed images.

    Masks use only images whose every human label has a mask; ``{"bbox": coco_ap(...),
    "segm": coco_ap(...)}`` (``segm.undefined`` says why when no image qualifies).
    """
    box = coco_ap(truths, predictions, images, categories, "bbox")
    masked = {i for i in images}
    for t in truths:
        if not t.get("mask"):
            masked.discard(t["image_id"])
    with_truth = {t["image_id"] for t in truths if t["image_id"] in masked}
    if not with_truth:
        seg = {"iou_type": "segm", "images": 0, "truths": 0, "predictions": 0, "AP": None, "AP50": None,
               "AP75": None, "per_class": {}, "pr_curves": {},
               "undefined": "no reviewed image whose human labels all carry masks (box-only review)"}
    else:
        seg = coco_ap(truths, predictions, {i: images[i] for i in masked}, categories, "segm")
    return {"bbox": box, "segm": seg}
