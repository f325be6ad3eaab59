"""The release's error rate (``release_error_rate`` gate): stratified estimate, MOVER-Wilson
interval, per-model audit and the reviewers' error on gold, against hand-computed values.

Hand computation (z = 1.959964, Wilson 1927): for k/n, centre (p + z^2/2n) / (1 + z^2/n) and
half width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n):
2/20 -> [0.027866, 0.301034]; 0/10 -> [0, z^2/(10+z^2)] = [0, 0.277533]; 1/10 -> [0.017876, 0.404150];
0/5 -> [0, 0.434482].
"""

from __future__ import annotations

import pytest

from labelloop.qa.metrics import audits_by_model, build_qa_report
from labelloop.qa.release_error import (
    image_models,
    mover_wilson,
    release_error_gate,
    release_error_rate,
    reviewer_gold_errors,
)


def test_issue_example_all_auto_accepted_audit_2_of_20_blocks():
    # 1,000 images: 980 auto-accepted and unreviewed, the 20 audited ones reviewed; no gold set.
    f = release_error_rate({"m1": 980}, 20, 1000, {"m1": (2, 20)}, None)
    s = f["strata"][0]
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.027866, 0.301034), abs=1e-6)
    assert f["estimate"] == pytest.approx(0.098)  # 0.98 * 0.1
    assert f["ci_low"] == pytest.approx(0.098 - 0.98 * (0.1 - 0.027866), abs=1e-6)  # 0.027309
    assert round(f["ci_low"], 3) == 0.027
    assert f["ci_high"] == pytest.approx(0.098 + 0.98 * (0.301034 - 0.1), abs=1e-6)
    assert f["status"] == "fail" and "lies above the 0.02 target" in f["reason"]
    assert "reviewers' error is not measured" in f["reason"] and f["reviewers_measured"] is False
    g = release_error_gate(f)
    assert g["name"] == "release_error_rate" and g["blocking"] and g["status"] == "fail"
    assert g["interval"] == pytest.approx([0.027309, 0.295013], abs=1e-6)


def test_one_stratum_of_weight_one_is_the_plain_wilson_interval():
    assert mover_wilson([(1.0, 2, 20)]) == pytest.approx((0.1, 0.027866, 0.301034), abs=1e-6)


def test_two_strata_mover_wilson_hand_computed():
    # w_A = w_R = 0.5; audit 1/10, gold 0/5: est 0.05,
    # L = 0.05 - sqrt((0.5 (0.1 - 0.017876))^2 + 0) = 0.008938,
    # U = 0.05 + sqrt((0.5 (0.404150 - 0.1))^2 + (0.5 * 0.434482)^2) = 0.315180
    assert mover_wilson([(0.5, 1, 10), (0.5, 0, 5)]) == pytest.approx((0.05, 0.008938, 0.315180), abs=1e-6)


def test_issue_example_all_reviewed_no_reviewer_error_on_gold_is_not_blocked():
    f = release_error_rate({}, 12, 12, {}, (0, 10))
    assert f["estimate"] == 0.0 and f["ci_low"] == 0.0
    assert f["ci_high"] == pytest.approx(0.277533, abs=1e-6)
    assert f["status"] == "warn"
    assert f["strata"][0]["needed"] == 189  # 0/189 is the first Wilson upper bound below 2%
    assert "about 189 reviewer annotations of gold images with no errors" in f["reason"]


def test_all_reviewed_without_gold_warns_not_passes_and_says_reviewers_not_measured():
    """Not blocked (the issue), but no ``pass`` on a stratum nothing measured: it warns and says
    what settles it (a gold set)."""
    f = release_error_rate({}, 12, 12, {}, None)
    assert (f["estimate"], f["ci_low"], f["ci_high"], f["status"]) == (0.0, 0.0, 0.0, "warn")
    assert "reviewers' error is not measured" in f["reason"] and "gold set" in f["reason"]
    assert "QA-sample" not in f["reason"]


def test_model_with_no_audit_warns_and_names_it():
    f = release_error_rate({"new-model": 3}, 1, 4, {}, None)
    assert f["status"] == "warn" and f["ci_high"] == pytest.approx(0.75)  # w = 3/4, Wilson of 0/0 = [0, 1]
    assert "no audit yet of model new-model" in f["reason"]


def test_empty_release_is_not_measured():
    assert release_error_rate({}, 0, 0, {}, None)["status"] == "not_measured"


def test_reviewer_gold_errors_each_rule():
    gold = [{"image_id": "g1", "category": "cat", "bbox": [0, 0, 10, 10]},
            {"image_id": "g2", "category": "cat", "bbox": [0, 0, 10, 10]},
            {"image_id": "g3", "category": "cat", "bbox": [0, 0, 10, 10]},
            {"image_id": "g4", "category": "cat", "bbox": [0, 0, 10, 10]}]

    def ann(who, image, *labels):
        return {"annotator": who, "image_id": image, "labels": list(labels)}

    anns = [ann("a", "g1", {"category": "cat", "bbox": [0, 0, 10, 9]}),            # IoU 0.9: fine
            ann("a", "g2", {"category": "person", "bbox": [0, 0, 10, 10]}),        # wrong class
            ann("a", "g3", {"category": "cat", "bbox": [0, 0, 10, 5]}),            # IoU 0.5 < 0.75
            ann("a", "g4"),                                                         # missed
            ann("a", "g5", {"category": "cat", "bbox": [5, 5, 9, 9]}),             # trusted negative: extra
            ann("a", "other", {"category": "cat", "bbox": [0, 0, 1, 1]})]          # not a gold image
    r = reviewer_gold_errors(gold, ["g1", "g2", "g3", "g4", "g5"], anns, 0.75)
    assert (r["k"], r["n"]) == (4, 5)
    assert r["errors"] == {"a g2": ["class person where gold says cat"], "a g3": ["cat box at IoU 0.50"],
                           "a g4": ["missed cat"], "a g5": ["extra cat"]}


def test_audit_is_per_model_an_old_audit_is_not_judged_by_a_new_model():
    queue = [{"image_id": "q1", "route": "qa_sample"}, {"image_id": "q2", "route": "qa_sample"}]
    reviews = [{"image_id": i, "review_id": f"r-{i}", "was_cancelled": False, "updated_at": "2026-01-01"}
               for i in ("q1", "q2")]
    humans = [{"image_id": "q1", "review_id": "r-q1", "action": "accepted", "source_prediction_id": "old1",
               "category": "cat", "bbox": [0, 0, 10, 10]},
              {"image_id": "q2", "review_id": "r-q2", "action": "accepted", "source_prediction_id": "new2",
               "category": "cat", "bbox": [0, 0, 10, 10]},
              {"image_id": "q2", "review_id": "r-q2", "action": "added", "source_prediction_id": None,
               "category": "cat", "bbox": [20, 20, 30, 30]}]
    # q1 was routed with model "old" (its prediction kept as it was); q2 with "new" (a box added).
    autos = [{"image_id": "q1", "prediction_id": "old1", "category": "cat", "bbox": [0, 0, 10, 10], "model_id": "old"},
             {"image_id": "q2", "prediction_id": "new2", "category": "cat", "bbox": [0, 0, 10, 10],
              "model_version": "new"}]
    by = audits_by_model(queue, reviews, humans, autos, "new")
    assert {m: (a["n_errors"], a["n_audited"]) for m, a in by.items()} == {"new": (1, 1), "old": (0, 1)}
    assert by["new"]["images_in_error"] == ["q2"]


def test_image_models_counts_auto_accepted_by_model_and_reviewed():
    labels = [{"image_id": "a", "action": "auto_accepted", "model_id": "m1"},
              {"image_id": "a", "action": "auto_accepted", "model_id": "m1"},
              {"image_id": "b", "action": "auto_accepted", "model_id": "m2"},
              {"image_id": "c", "action": "accepted", "model_id": None}]
    resolved = [{"image_id": "a", "resolution": "auto_accepted"}, {"image_id": "b", "resolution": "auto_accepted"},
                {"image_id": "c", "resolution": "reviewed"}, {"image_id": "d", "resolution": "reviewed"},
                {"image_id": "e", "resolution": "auto_accepted"}]  # a negative: the current model's
    assert image_models(labels, resolved, "m2") == ({"m1": 1, "m2": 2}, 2, 5)


def test_report_of_reviewed_release_is_not_blocked_by_the_pre_labelers_audit():
    # The one audited auto-accepted pre-label was wrong (reviewer added a box), but the reviewed
    # labels replaced it: the release holds no auto-accepted image.
    queue = [{"image_id": "q", "route": "qa_sample"}]
    reviews = [{"image_id": "q", "review_id": "r-q", "was_cancelled": False, "updated_at": "2026-01-01"}]
    humans = [{"image_id": "q", "review_id": "r-q", "action": "added", "source_prediction_id": None,
               "category": "cat", "bbox": [0, 0, 10, 10]}]
    autos = [{"image_id": "q", "prediction_id": "p", "category": "cat", "bbox": [20, 20, 30, 30], "model_id": "m"}]
    labels = [{"label_id": "l", "image_id": "q", "category": "cat", "bbox": [0, 0, 10, 10], "origin": "human",
               "action": "added", "route": "qa_sample"}]
    r = build_qa_report(labels=labels, labels_sha256="0" * 64, policy_id="p", review_queue=queue, reviews=reviews,
                        human_labels=humans, predictions=[], images={"q": (64, 64)}, categories=["cat"],
                        auto_labels=autos, resolved_images=[{"image_id": "q", "resolution": "reviewed", "n_labels": 1,
                                                             "review_id": "r-q", "route": "qa_sample"}],
                        model_id="m", reviewer_gold=(0, 10))
    assert r["audit"]["status"] == "fail" and r["audit_by_model"]["m"]["n_errors"] == 1  # still reported
    gate = r["gates"][1]
    assert gate["name"] == "release_error_rate" and gate["status"] == "warn" and gate["value"] == 0.0
    assert "QA-sample" not in gate["reason"]


def test_routed_auto_labels_are_the_predictions_the_review_export_sent():
    from labelloop.qa.run import routed_auto_labels

    def sent(image, pid, model, source="labelloop/b1"):
        return {"source": source, "image_id": image, "region_id": None, "prediction_id": pid, "category": "cat",
                "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.9, "model_version": model, "mask": None}

    d = {"model_id": "new",
         "exported": [sent("q1", "o1", "old"), sent("q1", "n1", "new"),            # exported under two models
                      sent("q2", "n2", "new"), sent("q2", "n2", "new"),            # sent twice: counted once
                      sent("q2", "lb-x", "labelloop-current-labels", "labelloop/label-suspects")],
         "all_human_labels": [{"image_id": "q1", "source_prediction_id": "o1"}],   # q1's review saw "old"
         "kept": [{"image_id": "q3", "prediction_id": "k3", "category": "cat", "bbox": [0, 0, 5, 5],
                   "model_id": "new"}]}
    rows = routed_auto_labels(d, {"q1", "q2", "q3"})
    assert [(r["image_id"], r["prediction_id"], r["model_id"]) for r in rows] == [
        ("q1", "o1", "old"), ("q2", "n2", "new"), ("q3", "k3", "new")]  # q3 never exported: current model


def test_hint_never_asks_a_model_for_more_audits_than_it_auto_accepted():
    """One auto-accepted image, audit 0/1: an audit of about 13 is impossible, so the hint says
    to review that image instead."""
    f = release_error_rate({"m1": 1}, 11, 12, {"m1": (0, 1)}, (0, 5000))
    assert f["status"] == "warn"
    assert "reviewing the 1 images auto-accepted by model m1 (an audit would need about 13" in f["reason"]
    assert "audited images of model m1" not in f["reason"]
