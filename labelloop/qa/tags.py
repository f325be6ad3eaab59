"""QA of image-level tags (``level: tag`` categories, progressive labeling).

- **Pre-label precision / recall against the reviewers**, per tag category, over the reviewed
  images (the image's latest current review is the truth, as for boxes). An image-level
  pre-label of a tag category is the image's best score among that category's kept predictions
  (the backends give one per image and tag category, the best box score of its prompt,
  :func:`labelloop.prelabel.protocol.image_level_tags`; kept: at or above the
  category's ``low`` threshold, :func:`labelloop.routing.confidence.kept_predictions`). TP: predicted
  and tagged by the reviewer; FP: predicted, not tagged; FN: tagged, not predicted. Precision =
  TP / (TP + FP), recall = TP / (TP + FN), each with its Wilson 95% interval
  (:func:`labelloop.qa.intervals.wilson_interval`); None (undefined) when the denominator is 0,
  e.g. with the OpenCV backend, which gives no tag pre-label.
- **Cohen's kappa on double reviews**: on every image that two reviewers annotated (each one's
  most recent current annotation, :func:`labelloop.qa.agreement.current_annotations`), one unit
  per (image, tag category) with the two answers present / absent; kappa per category and pooled
  over categories, with the bootstrap interval of
  :func:`labelloop.qa.agreement.kappa_with_interval` (Cohen 1960). With more than two reviewers
  of an image, the first two in annotator order are compared.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from labelloop.qa.agreement import current_annotations, kappa_with_interval
from labelloop.qa.intervals import wilson_interval
from labelloop.tables.schemas import HumanTagRow, PredictionRow, ReviewRow


def predicted_tags(kept: Iterable[PredictionRow], tag_categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """``image_id -> {tag category: image-level score}``: the best score of each tag category's
    kept predictions on the image (``kept``: predictions at or above their ``low`` threshold)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    tags = set(tag_categories)
    for p in kept:
        if p["category"] in tags:
            cur = out[p["image_id"]].get(p["category"])
            out[p["image_id"]][p["category"]] = max(float(p["score"]), cur if cur is not None else float("-inf"))
    return dict(out)


def tag_precision_recall(predicted: Mapping[str, Iterable[str]], truth: Mapping[str, Iterable[str]],
                         tag_categories: Sequence[str], confidence: float = 0.95) -> dict[str, dict]:
    """Per tag category ``{"tp", "fp", "fn", "precision", "precision_ci", "recall", "recall_ci"}``
    over the images of ``truth`` (``image_id -> the reviewer's tags``; an image absent from
    ``predicted`` has no tag pre-label). Undefined figures are None, with a None interval."""
    out: dict[str, dict] = {}
    for c in tag_categories:
        tp = fp = fn = 0
        for image_id, tags in truth.items():
            has, said = c in set(predicted.get(image_id, ())), c in set(tags)
            tp += has and said
            fp += has and not said
            fn += said and not has
        prec = tp / (tp + fp) if tp + fp else None
        rec = tp / (tp + fn) if tp + fn else None
        out[c] = {"tp": tp, "fp": fp, "fn": fn, "precision": prec,
                  "precision_ci": list(wilson_interval(tp, tp + fp, confidence)) if tp + fp else None,
                  "recall": rec, "recall_ci": list(wilson_interval(tp, tp + fn, confidence)) if tp + fn else None}
    return out


def tag_agreement(reviews: Iterable[ReviewRow], human_tags: Iterable[HumanTagRow], tag_categories: Sequence[str],
                  confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """Cohen's kappa of two reviewers' tags (module docstring).

    Returns ``{"double_reviewed_images", "per_category": {category: kappa result}, "pooled": kappa
    result}``; a kappa result is :func:`labelloop.qa.agreement.kappa_with_interval`'s dict
    (``undefined`` names why kappa is None, e.g. both reviewers always agree on one answer)."""
    anns = current_annotations(reviews, [])
    by_review: dict[str, set[str]] = defaultdict(set)
    for t in human_tags:
        by_review[t["review_id"]].add(t["category"])
    per_image: dict[str, list[dict]] = defaultdict(list)
    for a in anns:
        per_image[a["image_id"]].append(a)
    units: dict[str, tuple[list[str], list[str]]] = {c: ([], []) for c in tag_categories}
    pairs = 0
    for image_id in sorted(per_image):
        two = sorted(per_image[image_id], key=lambda a: a["annotator"])[:2]
        if len(two) < 2:
            continue
        pairs += 1
        for c in tag_categories:
            units[c][0].append("present" if c in by_review[two[0]["review_id"]] else "absent")
            units[c][1].append("present" if c in by_review[two[1]["review_id"]] else "absent")
    per = {c: kappa_with_interval(a, b, confidence, resamples, seed) for c, (a, b) in units.items()}
    pooled_a = [u for c in tag_categories for u in units[c][0]]
    pooled_b = [u for c in tag_categories for u in units[c][1]]
    return {"double_reviewed_images": pairs, "per_category": per,
            "pooled": kappa_with_interval(pooled_a, pooled_b, confidence, resamples, seed)}
