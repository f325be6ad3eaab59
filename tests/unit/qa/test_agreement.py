"""Inter-annotator agreement: Cohen's kappa on matched boxes, hand-computed values, undefined cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labelloop.qa.agreement import (
    agreement_units,
    kappa_from_counts,
    kappa_gates,
    kappa_with_interval,
    match_objects,
    pairwise_agreement,
)


def _b(cat, box):
    return {"category": cat, "bbox": list(box)}


def _ann(who, image, labels):
    return {"annotator": who, "image_id": image, "review_id": f"{who}{image}", "labels": labels}


def _hand_case():
    """Four images; units A/B = (cat,cat) (cat,dog) (dog,dog) (dog,missing) (missing,cat)."""
    a = [_ann("A", "i1", [_b("cat", (0, 0, 10, 10)), _b("cat", (50, 50, 70, 70))]),
         _ann("A", "i2", [_b("dog", (0, 0, 30, 30))]),
         _ann("A", "i3", [_b("dog", (5, 5, 25, 25))]),
         _ann("A", "i4", [])]
    b = [_ann("B", "i1", [_b("cat", (0, 0, 10, 11)), _b("dog", (50, 50, 70, 72))]),
         _ann("B", "i2", [_b("dog", (1, 1, 30, 30))]),
         _ann("B", "i3", []),
         _ann("B", "i4", [_b("cat", (10, 10, 40, 40))])]
    return a + b


def test_kappa_matches_the_hand_computation():
    res = pairwise_agreement(_hand_case())
    (pair,) = res["pairs"]
    assert pair["annotators"] == ["A", "B"] and pair["images"] == 4 and pair["n_units"] == 5
    # p_o = 2/5; marginals A = B = (cat 2, dog 2, missing 1): p_e = (4 + 4 + 1) / 25 = 9/25
    assert pair["observed_agreement"] == pytest.approx(0.4)
    assert pair["kappa"] == pytest.approx((0.4 - 0.36) / (1 - 0.36))  # 0.0625
    assert pair["confusion"] == {"cat": {"cat": 1, "dog": 1}, "dog": {"dog": 1, "missing": 1}, "missing": {"cat": 1}}
    assert pair["ci_low"] <= pair["kappa"] <= pair["ci_high"] and pair["se"] > 0
    assert res["double_reviewed_images"] == 4
    worst = min(res["images"], key=lambda i: (i["agreement"] if i["agreement"] is not None else 9))
    assert worst["image_id"] in ("i3", "i4") and worst["agreement"] == 0.0


def test_vectorized_kappa_equals_sklearn():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, 200))
    counts = np.zeros((3, 3))
    np.add.at(counts, (a, b), 1)
    assert kappa_from_counts(counts) == pytest.approx(cohen_kappa_score(a, b))
    assert np.isnan(kappa_from_counts(np.array([[5.0]])))  # one class: p_e = 1


def test_undefined_cases_have_reasons_never_zero_or_nan():
    one = kappa_with_interval(["cat", "cat"], ["cat", "cat"])
    assert one["kappa"] is None and "only one class ('cat')" in one["undefined"]
    none = kappa_with_interval([], [])
    assert none["kappa"] is None and "no objects" in none["undefined"]
    single = pairwise_agreement([_ann("A", "i1", [_b("cat", (0, 0, 5, 5))])])
    assert single["double_reviewed_images"] == 0 and single["pairs"] == []
    assert single["pooled"]["undefined"] == "no image was reviewed by two annotators"
    gate, flag = kappa_gates(single)
    assert gate["status"] == "not_measured" and flag["status"] == "not_measured"
    assert "no image was reviewed by two annotators" in gate["reason"]
    json.dumps([single, gate, flag], allow_nan=False)


def test_matching_is_one_to_one_and_class_agnostic():
    a = [_b("cat", (0, 0, 10, 10)), _b("dog", (100, 100, 110, 110))]
    b = [_b("dog", (0, 0, 10, 10))]
    assert match_objects(a, b) == [(0, 0, 1.0), (1, None, 0.0)]
    assert agreement_units(a, b) == [("cat", "dog", 1.0), ("dog", "missing", 0.0)]


def test_gates_pass_fail_and_flag_guidelines():
    boxes = [_b(c, (k * 20, 0, k * 20 + 10, 10)) for k, c in enumerate(["cat", "dog"] * 5)]
    same = [_ann("A", "i", boxes), _ann("B", "i", boxes)]
    gate, flag = kappa_gates(pairwise_agreement(same))
    assert (gate["status"], gate["value"], flag["status"]) == ("pass", 1.0, "pass")
    swapped = [_b("dog" if b["category"] == "cat" else "cat", b["bbox"]) for b in boxes]
    many = [_ann("A", f"i{k}", boxes) for k in range(5)] + [_ann("B", f"i{k}", swapped) for k in range(5)]
    res = pairwise_agreement(many)
    assert res["pairs"][0]["kappa"] == pytest.approx(-1.0)
    gate, flag = kappa_gates(res)
    assert gate["status"] == "fail" and "kappa A vs B -1.000" in gate["reason"] and "lies below the 0.8" in gate["reason"]
    assert flag["status"] == "warn" and "guidelines" in flag["reason"] and not flag["blocking"]
    assert gate["images"] == [f"i{k}" for k in range(5)]
    few = kappa_gates(pairwise_agreement([_ann("A", "i", boxes[:2]), _ann("B", "i", swapped[:2])]))[0]
    assert few["status"] == "warn" and "only 2 objects" in few["reason"]
