"""Reviewers against the gold set: per-reviewer precision, recall, mean IoU, class accuracy; gates.

For each reviewer and each gold image they annotated (their current annotation,
:func:`labelloop.qa.agreement.current_annotations`):

- Objects are matched one to one, class-agnostic, greedily by IoU as COCO evaluation does
  (:func:`labelloop.qa.agreement.match_objects`; any overlap counts for localization).
- **mean IoU** (localization): the mean over objects of the matched pair's IoU, with 0 for a
  gold box the reviewer missed and for a box the reviewer drew where the gold set has none,
  so shifted, dropped and spurious boxes all lower it. Interval: percentile bootstrap over
  objects (:mod:`labelloop.qa.intervals`).
- **class accuracy**: among pairs matched at IoU >= 0.5, the share whose classes agree; Wilson
  interval.
- **precision / recall / mean IoU at 0.5 and 0.75**, overall and per class: the reviewer's boxes
  against the gold boxes with COCO-style same-class greedy matching
  (:func:`labelloop.qa.metrics.detection_metrics`).

Gates (``gold_mean_iou``: >= 0.5, or 0.75 in strict mode; ``gold_class_accuracy``: >= 0.95) judge
each reviewer by the interval rule of :mod:`labelloop.qa.intervals` and take the worst reviewer.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from labelloop.qa.agreement import MISSING, match_objects
from labelloop.qa.gates import gate_result
from labelloop.qa.intervals import (
    MIN_BOOTSTRAP_N,
    STATUS_ORDER,
    gate_higher_is_better,
    mean_interval,
    proportion_gate,
    scaled_sample_size,
    worst,
)
from labelloop.qa.metrics import detection_metrics
from labelloop.tables.schemas import GoldLabelRow, HumanLabelRow

ANY_OVERLAP = 1e-9
CLASS_IOU = 0.5


def _image_units(review_labels: Sequence[HumanLabelRow], gold: Sequence[GoldLabelRow]) -> list[dict]:
    out = []
    for i, j, v in match_objects(review_labels, gold, ANY_OVERLAP):
        out.append({"reviewer_class": review_labels[i]["category"] if i is not None else MISSING,
                    "gold_class": gold[j]["category"] if j is not None else MISSING, "iou": float(v),
                    "reviewer_bbox": list(review_labels[i]["bbox"]) if i is not None else None,
                    "gold_bbox": list(gold[j]["bbox"]) if j is not None else None})
    return out


def reviewer_vs_gold(gold_labels: Sequence[GoldLabelRow], gold_image_ids: list[str], annotations: list[dict],
                     mean_iou_threshold: float = 0.5, confidence: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Figures per reviewer on the gold images they annotated.

    Args:
        gold_labels: GOLD_LABELS rows; gold_image_ids: every gold image (negatives included);
        annotations: :func:`labelloop.qa.agreement.current_annotations` of all reviews.
        mean_iou_threshold: an object below this IoU is listed among the reviewer's errors.
    The value returned:

        ``{"gold_images": int, "reviewers": {annotator: {"images", "objects", "mean_iou",
        "mean_iou_ci": [lo, hi] | None, "class_pairs", "class_correct", "class_accuracy",
        "class_accuracy_ci", "detection": detection_metrics(...), "errors": {image_id: [text]},
        "confusion": {reviewer_class: {gold_class: n}}}}, "pooled": {same keys}}``. Undefined
        figures are ``None``.
    """
    gold_ids = set(gold_image_ids)
    gold_by_image: dict[str, list[GoldLabelRow]] = defaultdict(list)
    for g in gold_labels:
        gold_by_image[g["image_id"]].append(g)
    per_rev: dict[str, list[tuple[str, list[HumanLabelRow], list[GoldLabelRow]]]] = defaultdict(list)
    for a in annotations:
        if a["image_id"] in gold_ids:
            per_rev[a["annotator"]].append((a["image_id"], a["labels"], gold_by_image.get(a["image_id"], [])))
    reviewers = {r: _figures(items, mean_iou_threshold, confidence, resamples, seed) for r, items in sorted(per_rev.items())}
    pooled = _figures([x for items in per_rev.values() for x in items], mean_iou_threshold, confidence, resamples,
                      seed)
    return {"gold_images": len(gold_ids), "reviewers": reviewers, "pooled": pooled}


def _figures(items: list[tuple[str, list[HumanLabelRow], list[GoldLabelRow]]], threshold: float, confidence: float,
             resamples: int, seed: int) -> dict:
    ious, pairs, correct = [], 0, 0
    errors: dict[str, list[str]] = {}
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    preds, truths = [], []
    for image_id, labels, gold in items:
        errs = []
        for u in _image_units(labels, gold):
            ious.append(u["iou"])
            confusion[u["reviewer_class"]][u["gold_class"]] += 1
            if u["reviewer_class"] == MISSING:
                errs.append(f"missed {u['gold_class']}")
            elif u["gold_class"] == MISSING:
                errs.append(f"spurious {u['reviewer_class']}")
            else:
                if u["iou"] >= CLASS_IOU:
                    pairs += 1
                    correct += u["reviewer_class"] == u["gold_class"]
                if u["reviewer_class"] != u["gold_class"]:
                    errs.append(f"class {u['reviewer_class']} where gold says {u['gold_class']}")
                if u["iou"] < threshold:
                    errs.append(f"{u['gold_class']} box at IoU {u['iou']:.2f}")
        if errs:
            errors[image_id] = errs
        preds += [{"image_id": image_id, "category": h["category"], "bbox": h["bbox"], "score": 0.0} for h in labels]
        truths += [{"image_id": image_id, "category": g["category"], "bbox": g["bbox"]} for g in gold]
    ci = mean_interval(ious, confidence, resamples, seed)
    return {"images": len(items), "objects": len(ious), "mean_iou": sum(ious) / len(ious) if ious else None,
            "mean_iou_ci": list(ci) if ci else None, "class_pairs": pairs, "class_correct": correct,
            "class_accuracy": correct / pairs if pairs else None,
            "detection": detection_metrics(preds, truths), "errors": dict(sorted(errors.items())),
            "confusion": {a: dict(sorted(r.items())) for a, r in sorted(confusion.items())}}


def gold_gates(result: dict, mean_iou_threshold: float = 0.5, class_accuracy_threshold: float = 0.95,
               confidence: float = 0.95, strict: bool = False) -> list[dict]:
    """The blocking ``gold_mean_iou`` and ``gold_class_accuracy`` gates from :func:`reviewer_vs_gold`.

    Each reviewer is judged alone (mean IoU: bootstrap interval, at least
    :data:`~labelloop.qa.intervals.MIN_BOOTSTRAP_N` objects; class accuracy: Wilson interval); a gate
    takes its worst reviewer. ``images``: the gold images where failing (else warned) reviewers
    erred. No reviewer on a gold image: ``not_measured``.
    """
    mode = " (strict)" if strict else ""
    gates = []
    for name, thr in (("gold_mean_iou", mean_iou_threshold), ("gold_class_accuracy", class_accuracy_threshold)):
        statuses, images, per = [], [], {}
        reasons: list[Any] = []  # (rank, reason) pairs, then the reasons in that order
        for rev, f in result.get("reviewers", {}).items():
            if name == "gold_mean_iou":
                if f["mean_iou"] is None:
                    continue
                lo, hi = f["mean_iou_ci"]
                needed = scaled_sample_size(f["objects"], f["mean_iou"], lo, hi, thr)
                status, why = gate_higher_is_better(f["mean_iou"], (lo, hi), thr, f["objects"],
                                                    what=f"{rev} mean IoU vs gold", unit="objects", needed=needed,
                                                    min_n=MIN_BOOTSTRAP_N, confidence=confidence)
                value = f["mean_iou"]
            else:
                g = proportion_gate(f["class_correct"], f["class_pairs"], thr, what=f"{rev} class accuracy vs gold",
                                    unit="matched boxes", confidence=confidence)
                if g["status"] == "not_measured":
                    continue
                status, why, value = g["status"], g["reason"], g["value"]
            statuses.append(status)
            reasons.append((-STATUS_ORDER.get(status, 0), why))
            per[rev] = {"status": status, "value": value}
        reasons = [why for _, why in sorted(reasons, key=lambda r: r[0])]  # failing reviewers first
        st = worst(statuses) if statuses else "not_measured"
        bad = [r for r, v in per.items() if v["status"] == st and st in ("fail", "warn")]
        for r in bad:
            images += [i for i in result["reviewers"][r]["errors"] if i not in images]
        if not statuses:
            reasons = ["not measured: no reviewer has annotated a gold image" if result.get("gold_images")
                       else "not measured: no gold set registered (labelloop register-gold)"]
        worst_value = min((v["value"] for v in per.values()), default=None)
        gates.append(gate_result(name, st, worst_value, thr, "; ".join(reasons) + (mode if statuses else ""),
                                 sorted(images), reviewers=per))
    return gates
