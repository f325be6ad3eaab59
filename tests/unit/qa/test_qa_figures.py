"""COCO AP through pycocotools, cost, label statistics and drift, interval gates: hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from labelloop.qa.cost import estimate_cost
from labelloop.qa.intervals import (
    accuracy_sample_size_needed,
    gate_higher_is_better,
    mean_interval,
    proportion_gate,
    wilson_interval,
)
from labelloop.qa.model_eval import coco_ap, model_vs_human
from labelloop.qa.statistics import box_sizes, class_drift, objects_per_image
from labelloop.workspace.config import Cost

SIZES = {"a": (100, 100), "b": (100, 100)}


def _t(image, cat, box, **kw):
    return {"image_id": image, "category": cat, "bbox": list(box), **kw}


def test_perfect_predictions_have_ap_1():
    truths = [_t("a", "cat", (10, 10, 50, 50)), _t("b", "dog", (0, 0, 30, 60))]
    preds = [dict(t, score=0.9) for t in truths]
    r = coco_ap(truths, preds, SIZES, ["cat", "dog"])
    assert (r["AP"], r["AP50"], r["AP75"]) == pytest.approx((1.0, 1.0, 1.0))
    assert r["per_class"]["cat"]["AP"] == pytest.approx(1.0) and len(r["pr_curves"]["dog"]["precision"]) == 101


def test_a_higher_scored_false_positive_halves_precision():
    truths = [_t("a", "cat", (10, 10, 50, 50)), _t("b", "cat", (10, 10, 50, 50))]
    preds = [_t("a", "cat", (10, 10, 50, 50), score=0.9), _t("a", "cat", (60, 60, 90, 90), score=0.95)]
    r = coco_ap(truths, preds, SIZES, ["cat", "dog"])
    # ranked: FP (0.95), TP (0.9): recall 0.5 at precision 0.5; COCO interpolates precision 0.5
    # on the 51 recall points 0.00..0.50 and 0 above: AP = 51 * 0.5 / 101 at every IoU threshold
    assert r["AP50"] == pytest.approx(51 * 0.5 / 101) and r["AP"] == pytest.approx(51 * 0.5 / 101)
    assert r["per_class"]["dog"]["AP"] is None and r["per_class"]["dog"]["undefined"] == "no ground-truth label of this class"
    json.dumps(r, allow_nan=False)


def test_no_ground_truth_and_no_prediction():
    r = coco_ap([], [_t("a", "cat", (1, 1, 5, 5), score=0.5)], SIZES, ["cat"])
    assert r["AP"] is None and r["undefined"] == "no ground-truth label on the evaluated images"
    r = coco_ap([_t("a", "cat", (1, 1, 5, 5))], [], SIZES, ["cat"])
    assert (r["AP"], r["AP50"]) == (0.0, 0.0)


def test_masks_are_scored_only_where_humans_drew_masks():
    m = np.zeros((100, 100), dtype=np.uint8, order="F")
    m[10:50, 10:50] = 1
    rle = mask_utils.encode(m)
    rle = json.dumps({"size": rle["size"], "counts": rle["counts"].decode()})
    truths = [_t("a", "cat", (10, 10, 50, 50), mask=rle)]
    preds = [_t("a", "cat", (10, 10, 50, 50), score=0.8, mask=rle)]
    r = model_vs_human(truths, preds, {"a": (100, 100)}, ["cat"])
    assert r["segm"]["AP"] == pytest.approx(1.0) and r["bbox"]["AP"] == pytest.approx(1.0)
    r = model_vs_human([_t("a", "cat", (10, 10, 50, 50), mask=None)], preds, {"a": (100, 100)}, ["cat"])
    assert r["segm"]["AP"] is None and "box-only review" in r["segm"]["undefined"]


def test_cost_by_hand_review_and_saving():
    labels = [{"image_id": "a", "category": "cat", "mask": "rle"}, {"image_id": "a", "category": "cat", "mask": None},
              {"image_id": "b", "category": "dog", "mask": None}]
    resolved = [{"image_id": "a", "resolution": "reviewed"}, {"image_id": "b", "resolution": "auto_accepted"},
                {"image_id": "c", "resolution": "reviewed"}]
    humans = [{"image_id": "a", "action": "accepted"}, {"image_id": "a", "action": "corrected"},
              {"image_id": "c", "action": "deleted"}, {"image_id": "b", "action": "added"}]
    prices = Cost(classification_per_image=0.05, box_per_object=0.04, mask_per_object=1.0, accepted_box_factor=0.5)
    c = estimate_cost(labels, resolved, humans, prices)
    assert c["by_hand"] == {"images": 3, "boxes": 3, "masks": 1, "total": round(3 * 0.05 + 3 * 0.04 + 1.0, 2)}
    # reviewed a and c: 2 images, accepted at half price, corrected and deleted at full price
    assert c["review_done"]["total"] == round(2 * 0.05 + 0.5 * 0.04 + 2 * 0.04, 2)
    assert c["saving"] == round(1.27 - 0.2, 2) and c["saving_share"] == round(1.07 / 1.27, 4)


def test_box_sizes_objects_and_drift():
    labels = [_t("a", "cat", (0, 0, 10, 10)), _t("a", "cat", (0, 0, 50, 50)), _t("b", "dog", (0, 0, 100, 100))]
    s = box_sizes(labels)
    assert s["buckets"] == {"cat": {"small": 1, "medium": 1, "large": 0}, "dog": {"small": 0, "medium": 0, "large": 1}}
    o = objects_per_image(labels, ["a", "b", "c"])
    assert (o["images"], o["mean"], o["median"], o["max"], o["histogram"]) == (3, 1.0, 1.0, 2, {"0": 1, "1": 1, "2": 1})
    d = class_drift({"cat": 2, "dog": 2}, {"cat": 3, "dog": 1}, "dataset-v1")
    assert d["classes"]["cat"]["change"] == -0.25 and d["max_abs_change"] == 0.25
    # JS distance (base 2) between (0.5, 0.5) and (0.75, 0.25), by hand
    m = np.array([0.625, 0.375])
    kl = lambda p: float(np.sum(p * np.log2(p / m)))  # noqa: E731
    assert d["js_distance"] == pytest.approx(np.sqrt((kl(np.array([0.5, 0.5])) + kl(np.array([0.75, 0.25]))) / 2), abs=1e-4)
    assert class_drift({"cat": 1}, None, None)["undefined"] == "no earlier release to compare with"


def test_interval_gates():
    g = proportion_gate(95, 100, 0.95, what="acc", unit="boxes")
    assert g["status"] == "warn" and g["ci_low"] == pytest.approx(wilson_interval(95, 100)[0])
    assert proportion_gate(100, 100, 0.95, what="acc", unit="boxes")["status"] == "pass"
    assert proportion_gate(50, 100, 0.95, what="acc", unit="boxes")["status"] == "fail"
    n = accuracy_sample_size_needed(1.0, 0.95)
    assert wilson_interval(n, n)[0] >= 0.95 > wilson_interval(n - 1, n - 1)[0] and n == 73
    assert mean_interval([1.0] * 10) == (1.0, 1.0) and mean_interval([]) is None
    lo, hi = mean_interval([0.0, 1.0] * 50)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.05, abs=0.03)
    st, why = gate_higher_is_better(0.9, (0.8, 1.0), 0.5, 3, what="x", unit="objects", needed=None, min_n=5)
    assert st == "warn" and "only 3 objects" in why
