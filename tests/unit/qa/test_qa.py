"""QA statistics, audit gate, schema check, report assembly and HTML rendering."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from labelloop.qa.intervals import sample_size_needed, wilson_interval
from labelloop.qa.metrics import (audit, build_qa_report, class_counts, detection_metrics, route_counts, schema_check,
                                  tag_errors)
from labelloop.qa.report.html import render_html


# ---------------------------------------------------------------- Wilson interval, sample size
def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-3)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(2, 3)
    assert low == pytest.approx(0.2077, abs=1e-3) and high == pytest.approx(0.9385, abs=1e-3)


def test_sample_size_needed_zero_errors():
    n = sample_size_needed(0.0, 0.02)
    assert n == 189  # z^2 / (n + z^2) < 0.02  <=>  n > 49 z^2 = 188.2
    assert wilson_interval(0, n)[1] < 0.02
    assert wilson_interval(0, n - 1)[1] >= 0.02


def test_sample_size_needed_edges():
    assert sample_size_needed(0.02, 0.02) is None
    assert sample_size_needed(0.5, 0.02) is None
    assert sample_size_needed(0.019, 0.02, max_n=1000) is None
    n = sample_size_needed(0.005, 0.02)
    assert wilson_interval(round(0.005 * n), n)[1] < 0.02
    assert wilson_interval(round(0.005 * (n - 1)), n - 1)[1] >= 0.02


# ---------------------------------------------------------------- detection metrics
def _p(image, cat, bbox, score=0.9):
    return {"image_id": image, "category": cat, "bbox": bbox, "score": score}


def test_detection_iou_083_is_tp_at_both_thresholds():
    m = detection_metrics([_p("a", "cat", [0, 0, 10, 10])], [_p("a", "cat", [0, 0, 10, 12])])
    for key in ("iou@0.5", "iou@0.75"):
        row = m["overall"][key]
        assert (row["tp"], row["fp"], row["fn"]) == (1, 0, 0)
        assert row["precision"] == 1.0 and row["recall"] == 1.0
        assert row["mean_iou"] == pytest.approx(10 * 10 / (10 * 12))
    assert m["per_class"]["cat"]["iou@0.75"]["tp"] == 1


def test_detection_iou_05_is_tp_at_05_only():
    m = detection_metrics([_p("a", "cat", [0, 0, 10, 10])], [_p("a", "cat", [0, 0, 10, 20])])
    assert m["overall"]["iou@0.5"]["tp"] == 1
    assert m["overall"]["iou@0.5"]["mean_iou"] == pytest.approx(0.5)
    r75 = m["overall"]["iou@0.75"]
    assert (r75["tp"], r75["fp"], r75["fn"]) == (0, 1, 1)
    assert r75["precision"] == 0.0 and r75["mean_iou"] is None


def test_detection_wrong_class_is_fp_and_fn():
    m = detection_metrics([_p("a", "cat", [0, 0, 10, 10])], [_p("a", "person", [0, 0, 10, 10])])
    row = m["overall"]["iou@0.5"]
    assert (row["tp"], row["fp"], row["fn"]) == (0, 1, 1)
    assert m["per_class"]["cat"]["iou@0.5"]["recall"] is None  # no cat truth
    assert m["per_class"]["person"]["iou@0.5"]["precision"] is None  # no person prediction


def test_detection_higher_score_matches_first_and_images_are_separate():
    truths = [_p("a", "cat", [0, 0, 10, 10])]
    preds = [_p("a", "cat", [0, 0, 10, 11], score=0.4), _p("a", "cat", [0, 0, 10, 14], score=0.9),
             _p("b", "cat", [0, 0, 10, 10])]
    row = detection_metrics(preds, truths)["overall"]["iou@0.5"]
    assert (row["tp"], row["fp"], row["fn"]) == (1, 2, 0)
    assert row["mean_iou"] == pytest.approx(100 / 140)  # the 0.9-score box took the truth


def test_detection_empty_is_none_not_nan():
    m = detection_metrics([], [_p("a", "cat", [0, 0, 5, 5])])
    row = m["overall"]["iou@0.5"]
    assert row["precision"] is None and row["recall"] == 0.0 and row["fn"] == 1
    m = detection_metrics([], [])
    assert m["overall"]["iou@0.5"] == {"tp": 0, "fp": 0, "fn": 0, "precision": None, "recall": None,
                                       "mean_iou": None}
    json.dumps(m, allow_nan=False)


# ---------------------------------------------------------------- audit
def _queue(ids, route="qa_sample"):
    return [{"image_id": i, "route": route} for i in ids]


def _review(image, rid=None, cancelled=False, at="2024-01-01T00:00:00Z"):
    return {"image_id": image, "review_id": rid or f"r-{image}", "was_cancelled": cancelled, "updated_at": at}


def _auto(image, pid, cat="cat", bbox=(0, 0, 10, 10)):
    return {"image_id": image, "prediction_id": pid, "category": cat, "bbox": list(bbox)}


def _human(image, action, pid=None, cat="cat", bbox=(0, 0, 10, 10), rid=None):
    return {"image_id": image, "review_id": rid or f"r-{image}", "action": action, "source_prediction_id": pid,
            "category": cat, "bbox": list(bbox)}


def _three_image_case():
    queue = _queue(["i1", "i2", "i3"]) + _queue(["h1"], "human_review")
    reviews = [_review(i) for i in ("i1", "i2", "i3", "h1")]
    autos = [_auto("i1", "p1"), _auto("i2", "p2"), _auto("i2", "p2b", bbox=(20, 20, 30, 30)), _auto("i3", "p3")]
    humans = [_human("i1", "accepted", "p1"),
              _human("i2", "accepted", "p2"), _human("i2", "deleted", "p2b", bbox=(20, 20, 30, 30)),
              _human("i3", "accepted", "p3"), _human("i3", "added", bbox=(40, 40, 50, 50)),
              _human("h1", "added")]
    return queue, reviews, humans, autos


def test_audit_two_errors_in_three_fails():
    a = audit(*_three_image_case())
    assert (a["n_audited"], a["n_errors"]) == (3, 2)
    assert a["error_rate"] == pytest.approx(2 / 3)
    assert a["ci_low"] == pytest.approx(0.2077, abs=1e-3) and a["ci_low"] > 0.02
    assert a["status"] == "fail"
    assert a["images_in_error"] == ["i2", "i3"]
    assert a["sample_size_needed"] is None


def test_audit_clean_three_warns_with_sample_size():
    queue, reviews, _, autos = _three_image_case()
    humans = [_human(a["image_id"], "accepted", a["prediction_id"], bbox=a["bbox"]) for a in autos]
    a = audit(queue, reviews, humans, autos)
    assert (a["n_audited"], a["n_errors"], a["status"]) == (3, 0, "warn")
    assert a["sample_size_needed"] == 189
    assert "straddles the 2% target" in a["reason"] and "189" in a["reason"]


def test_audit_clean_300_passes():
    ids = [f"i{k:03d}" for k in range(300)]
    autos = [_auto(i, f"p{i}") for i in ids]
    humans = [_human(i, "accepted", f"p{i}") for i in ids]
    a = audit(_queue(ids), [_review(i) for i in ids], humans, autos)
    assert (a["n_audited"], a["n_errors"], a["status"]) == (300, 0, "pass")
    assert a["ci_high"] < 0.02


def test_audit_nothing_reviewed_warns():
    a = audit(_queue(["i1"]), [], [], [_auto("i1", "p1")])
    assert a["status"] == "warn" and a["n_audited"] == 0 and a["error_rate"] is None
    assert "no QA-sample image reviewed yet" in a["reason"]
    assert (a["ci_low"], a["ci_high"]) == (0.0, 1.0)


def test_audit_cancelled_review_is_not_audited():
    queue = _queue(["i1", "i2"])
    reviews = [_review("i1"), _review("i2", cancelled=True)]
    autos = [_auto("i1", "p1"), _auto("i2", "p2")]
    humans = [_human("i1", "accepted", "p1")]
    a = audit(queue, reviews, humans, autos)
    assert a["n_audited"] == 1 and a["n_errors"] == 0


def test_audit_latest_review_wins_and_relabel_move_are_errors():
    queue = _queue(["i1", "i2", "i3"])
    reviews = [_review("i1", "old", at="2024-01-01T00:00:00Z"), _review("i1", "new", at="2024-02-01T00:00:00Z"),
               _review("i2"), _review("i3")]
    autos = [_auto("i1", "p1"), _auto("i2", "p2"), _auto("i3", "p3")]
    humans = [_human("i1", "deleted", "p1", rid="old"), _human("i1", "accepted", "p1", rid="new"),
              _human("i2", "corrected", "p2", cat="person"),
              _human("i3", "corrected", "p3", bbox=(0, 0, 10, 20))]  # IoU 0.5 < 0.75
    a = audit(queue, reviews, humans, autos)
    assert a["images_in_error"] == ["i2", "i3"]
    assert "relabeled" in a["errors"]["i2"][0] and "moved" in a["errors"]["i3"][0]


def test_audit_unlinked_rows_matched_by_iou():
    queue = _queue(["i1", "i2", "i3"])
    reviews = [_review(i) for i in ("i1", "i2", "i3")]
    autos = [_auto("i1", "p1"), _auto("i2", "p2"), _auto("i3", "p3")]
    humans = [_human("i1", "accepted", None, bbox=(0, 0, 10, 11)),  # IoU 0.91: kept
              _human("i2", "accepted", None, bbox=(50, 50, 60, 60)),  # p2 deleted + box added
              ]  # i3: its auto label is gone, no row at all -> deleted
    a = audit(queue, reviews, humans, autos)
    assert a["images_in_error"] == ["i2", "i3"]
    assert any(e.startswith("deleted") for e in a["errors"]["i2"])
    assert any(e.startswith("added") for e in a["errors"]["i2"])


# ---------------------------------------------------------------- schema check
def test_schema_check_reports_each_problem():
    images = {"a": (100, 50)}
    labels = [
        {"label_id": "ok", "image_id": "a", "category": "cat", "bbox": [0, 0, 100, 50]},
        {"label_id": "outside", "image_id": "a", "category": "cat", "bbox": [90, 0, 110, 10]},
        {"label_id": "zero", "image_id": "a", "category": "cat", "bbox": [5, 5, 5, 10]},
        {"label_id": "unknown-cat", "image_id": "a", "category": "dog", "bbox": [0, 0, 1, 1]},
        {"label_id": "unknown-img", "image_id": "zz", "category": "cat", "bbox": [0, 0, 1, 1]},
    ]
    s = schema_check(labels, images, ["cat", "person"])
    assert s["status"] == "fail" and s["n_labels"] == 5 and s["n_invalid"] == 4
    by_id = {p["label_id"]: p["problem"] for p in s["problems"]}
    assert set(by_id) == {"outside", "zero", "unknown-cat", "unknown-img"}
    assert "outside" in by_id["outside"]
    assert "zero or negative area" in by_id["zero"]
    assert "unknown category" in by_id["unknown-cat"]
    assert "unknown image_id" in by_id["unknown-img"]
    assert s["images"] == ["a", "zz"]


def test_schema_check_valid_set_passes():
    s = schema_check([{"label_id": "1", "image_id": "a", "category": "cat", "bbox": [1, 1, 9, 9]}],
                     {"a": (10, 10)}, ["cat"])
    assert s == {"status": "pass", "n_labels": 1, "n_invalid": 0, "problems": [], "images": []}


# ---------------------------------------------------------------- counts, report, HTML
def test_route_and_class_counts():
    assert route_counts(_queue(["a", "b"]) + _queue(["c"], "auto_accept")) == {
        "auto_accept": 1, "qa_sample": 2, "human_review": 0}
    cc = class_counts([{"category": "cat", "origin": "model", "route": "auto_accept"},
                       {"category": "cat", "origin": "human", "route": "human_review"}])
    assert cc == {"cat": {"total": 2, "by_origin": {"human": 1, "model": 1},
                          "by_route": {"auto_accept": 1, "human_review": 1}}}


def _report():
    queue, reviews, humans, autos = _three_image_case()
    labels = [{"label_id": f"l-{a['prediction_id']}", "image_id": a["image_id"], "category": a["category"],
               "bbox": a["bbox"], "origin": "model", "action": "auto_accepted", "route": "qa_sample",
               "prediction_id": a["prediction_id"]} for a in autos]
    labels.append({"label_id": "l-h1", "image_id": "h1", "category": "cat", "bbox": [0, 0, 10, 10],
                   "origin": "human", "action": "added", "route": "human_review"})
    preds = [dict(a, score=0.91) for a in autos] + [_p("h1", "person", [0, 0, 10, 10], 0.5)]
    images = {i: (64, 48) for i in ("i1", "i2", "i3", "h1")}
    return build_qa_report(labels=labels, labels_sha256="ab" * 32, policy_id="policy-123", review_queue=queue,
                           reviews=reviews, human_labels=humans, predictions=preds, images=images,
                           categories=["cat", "person"], target=0.02, confidence=0.95, move_iou=0.75)


def test_build_qa_report_is_strict_json():
    r = _report()
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    assert [g["name"] for g in r["gates"]] == ["schema_valid", "release_error_rate"]
    assert r["gates"][0]["status"] == "pass"
    assert r["gates"][1]["status"] == "fail" and r["gates"][1]["images"] == ["i2", "i3"]
    assert r["audit"]["error_rate"] == 0.666667
    assert r["counts"]["routes"]["qa_sample"] == 3 and r["counts"]["images_reviewed"] == 4
    pv = r["prelabel_vs_human"]["per_class"]
    assert pv["person"]["iou@0.5"]["fp"] == 1 and pv["person"]["iou@0.5"]["recall"] is None
    o = r["prelabel_vs_human"]["overall"]["iou@0.5"]
    assert (o["tp"], o["fp"], o["fn"]) == (3, 2, 2)  # p2b deleted, h1 person wrong; 2 added boxes


def test_render_html_self_contained_and_deterministic():
    r = _report()
    img = Image.new("RGB", (64, 48), (200, 200, 200))
    boxes = [{"category": "cat", "bbox": [2, 10, 30, 40], "origin": "model"},
             {"category": "cat", "bbox": [4, 12, 32, 44], "origin": "human"}]
    html1 = render_html(r, (img, boxes))
    html2 = render_html(r, (img, boxes))
    assert html1 == html2
    assert html1.count("<img") >= 2 and html1.count("data:image/png;base64,") >= 2
    assert "http://" not in html1 and "https://" not in html1
    for text in ("schema_valid", "release_error_rate", "FAIL", "iou@0.75", "qa_sample", "person"):
        assert text in html1
    assert render_html(r, None).count("<img") == 1


def test_render_html_with_qa_sections_is_deterministic_and_says_why_figures_are_undefined():
    from labelloop.qa.agreement import pairwise_agreement
    from labelloop.qa.gold_eval import reviewer_vs_gold
    from labelloop.qa.model_eval import model_vs_human

    r = _report()
    r["gold"] = reviewer_vs_gold([], [], []) | {"sets": []}
    r["agreement"] = pairwise_agreement([])
    r["model_vs_human"] = model_vs_human([], [], {"i1": (64, 48)}, ["cat", "person"])
    r["label_stats"] = {"box_sizes": {}, "objects_per_image": {}, "drift": {"undefined": "no earlier release to compare with"}}
    r["cost"] = {"currency": "USD", "prices": {"box_per_object": 0.06}, "by_hand": {"images": 1, "boxes": 1, "masks": 0,
                 "total": 0.13}, "review_done": {"images": 0, "accepted": 0, "corrected": 0, "added": 0, "deleted": 0,
                                                 "masks": 0, "total": 0.0}, "saving": 0.13, "saving_share": 1.0}
    html = render_html(r, None, [])
    assert html == render_html(r, None, [])
    assert "nan" not in html.lower().replace("nanoseconds", "")
    for text in ("No gold set registered", "Kappa undefined: no image was reviewed by two annotators",
                 "no ground-truth label on the evaluated images", "no earlier release to compare with",
                 "saving: <b>0.13 USD</b>", "No PR curve: no reviewed ground truth yet."):
        assert text in html, text
    json.dumps(r, allow_nan=False)


def test_audit_counts_image_level_tags_like_boxes():
    """#16: an audited image whose auto-accepted tags the reviewer changed is in error, as for a
    box; agreeing tags (or a project without tag categories: auto_tags None) change nothing."""
    ids = ["i1", "i2", "i3"]
    autos = [_auto(i, f"p{i}") for i in ids]
    humans = [_human(i, "accepted", f"p{i}") for i in ids]
    auto_tags = {"i1": ["cat"], "i2": ["cat"], "i3": []}
    human_tags = {"i1": ["cat"], "i2": [], "i3": ["dog"]}
    a = audit(_queue(ids), [_review(i) for i in ids], humans, autos, auto_tags=auto_tags, human_tags=human_tags)
    assert (a["n_audited"], a["n_errors"]) == (3, 2)
    assert a["errors"] == {"i2": ["tag removed cat"], "i3": ["tag added dog"]}
    assert tag_errors(["cat", "dog"], ["dog", "person"]) == ["tag removed cat", "tag added person"]
    plain = audit(_queue(ids), [_review(i) for i in ids], humans, autos)
    assert plain["n_errors"] == 0
