"""Descriptive figures of a label set: box sizes, objects per image, class balance and its drift.

- Box sizes in COCO's area buckets (https://cocodataset.org/#detection-eval): small
  ``area < 32^2``, medium ``32^2 <= area < 96^2``, large ``area >= 96^2`` (square pixels), with
  area quantiles per class.
- Objects per image over resolved images (negatives count as 0).
- Class-balance drift from the last release: per class share now and then, the largest
  absolute change, and the Jensen-Shannon distance (base 2, in [0, 1]) between the two class
  distributions (``scipy.spatial.distance.jensenshannon``; Lin, 1991). Undefined (``None`` with a
  reason) when there is no earlier release or one of the two sets has no label.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon

from labelloop.geometry.boxes import area
from labelloop.tables.schemas import LabelRow

SMALL, MEDIUM = 32**2, 96**2


def box_sizes(labels: Sequence[LabelRow]) -> dict:
    """``{"buckets": {cat: {"small", "medium", "large"}}, "area_quantiles": {cat: {"p10", "p50",
    "p90"}}}`` over ``labels`` (bbox xyxy pixels); quantiles are square pixels."""
    buckets: dict[str, Counter] = {}
    areas: dict[str, list[float]] = {}
    for lab in labels:
        a = area(lab["bbox"])
        c = lab["category"]
        buckets.setdefault(c, Counter())["small" if a < SMALL else "medium" if a < MEDIUM else "large"] += 1
        areas.setdefault(c, []).append(a)
    return {"buckets": {c: {k: buckets[c].get(k, 0) for k in ("small", "medium", "large")} for c in sorted(buckets)},
            "area_quantiles": {c: dict(zip(("p10", "p50", "p90"),
                                           (round(float(q), 1) for q in np.quantile(v, [0.1, 0.5, 0.9]))))
                               for c, v in sorted(areas.items())}}


def objects_per_image(labels: Sequence[LabelRow], image_ids: list[str]) -> dict:
    """``{"images", "mean", "median", "max", "histogram": {n_objects: n_images}}``; None when no image."""
    per = Counter(lab["image_id"] for lab in labels)
    counts = [per.get(i, 0) for i in sorted(set(image_ids))]
    if not counts:
        return {"images": 0, "mean": None, "median": None, "max": None, "histogram": {}}
    hist = Counter(counts)
    return {"images": len(counts), "mean": round(float(np.mean(counts)), 4), "median": float(np.median(counts)),
            "max": int(max(counts)), "histogram": {str(k): hist[k] for k in sorted(hist)}}


def class_drift(current: dict[str, int], previous: dict[str, int] | None, previous_tag: str | None) -> dict:
    """Class-balance drift between label counts per class now and at the last release."""
    out: dict[str, Any] = {"previous_release": previous_tag, "classes": {}, "max_abs_change": None,
                           "js_distance": None, "undefined": None}
    if previous is None:
        return out | {"undefined": "no earlier release to compare with"}
    cats = sorted(set(current) | set(previous))
    n_now, n_then = sum(current.values()), sum(previous.values())
    for c in cats:
        now = current.get(c, 0) / n_now if n_now else None
        then = previous.get(c, 0) / n_then if n_then else None
        out["classes"][c] = {"now": current.get(c, 0), "then": previous.get(c, 0),
                             "share_now": None if now is None else round(now, 4),
                             "share_then": None if then is None else round(then, 4),
                             "change": None if now is None or then is None else round(now - then, 4)}
    if not n_now or not n_then:
        return out | {"undefined": "one of the two label sets has no label"}
    p = np.array([current.get(c, 0) for c in cats], float) / n_now
    q = np.array([previous.get(c, 0) for c in cats], float) / n_then
    out["max_abs_change"] = round(float(np.max(np.abs(p - q))), 4)
    out["js_distance"] = round(float(jensenshannon(p, q, base=2)), 4)
    return out
