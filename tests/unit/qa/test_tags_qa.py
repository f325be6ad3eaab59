"""QA of image-level tags (labelloop.qa.tags): pre-label precision / recall against the reviewers
and Cohen's kappa of two reviewers, against hand-computed values."""

from __future__ import annotations

import pytest

from labelloop.qa.report.sections import tags_html
from labelloop.qa.tags import predicted_tags, tag_agreement, tag_precision_recall


def review(rid: str, image: str, annotator: str) -> dict:
    return {"review_id": rid, "source": "label-studio/project-1", "task_id": image, "tool_annotation_id": rid,
            "updated_at": "2026-12-01T10:00:00Z", "image_id": image, "annotator": annotator, "was_cancelled": False}


def tag(rid: str, image: str, category: str) -> dict:
    return {"tag_id": f"tg-{rid}-{category}", "review_id": rid, "image_id": image, "category": category,
            "annotator": "x", "tool": "label-studio", "source": "label-studio/project-1",
            "reviewed_at": "2026-12-01T10:00:00Z", "import_sha256": "0" * 64, "import_run_id": None}


def test_precision_recall_from_the_best_kept_score():
    kept = [{"image_id": "i1", "category": "outdoor", "score": 0.9}, {"image_id": "i2", "category": "outdoor", "score": 0.7},
            {"image_id": "i2", "category": "outdoor", "score": 0.95}, {"image_id": "i7", "category": "outdoor", "score": 0.8},
            {"image_id": "i1", "category": "face", "score": 0.99}]
    pred = predicted_tags(kept, ["outdoor", "indoor"])
    assert pred == {"i1": {"outdoor": 0.9}, "i2": {"outdoor": 0.95}, "i7": {"outdoor": 0.8}}
    truth = {"i1": ["outdoor"], "i2": [], "i3": ["outdoor", "indoor"]}  # i7 is not reviewed: not counted
    pr = tag_precision_recall(pred, truth, ["outdoor", "indoor"])
    out = pr["outdoor"]
    assert (out["tp"], out["fp"], out["fn"], out["precision"], out["recall"]) == (1, 1, 1, 0.5, 0.5)
    # Wilson 95% of 1/2: centre 0.5, half-width 1.96 * sqrt(0.125 + 1.96**2 / 16) / (1 + 1.96**2 / 2)
    assert out["precision_ci"] == pytest.approx([0.0945, 0.9055], abs=1e-3)
    assert pr["indoor"] == {"tp": 0, "fp": 0, "fn": 1, "precision": None, "precision_ci": None, "recall": 0.0,
                            "recall_ci": pytest.approx([0.0, 0.7935], abs=1e-3)}


def test_kappa_of_two_reviewers_tags():
    reviews, tags = [], []
    a_says, b_says = {"1", "2", "3", "4"}, {"1", "2", "3", "5"}
    for i in "123456":
        reviews += [review(f"ra{i}", f"img{i}", "ann-a"), review(f"rb{i}", f"img{i}", "ann-b")]
        tags += [tag(f"ra{i}", f"img{i}", "outdoor")] if i in a_says else []
        tags += [tag(f"rb{i}", f"img{i}", "outdoor")] if i in b_says else []
    reviews.append(review("rc7", "img7", "ann-a"))  # reviewed once: not a unit
    res = tag_agreement(reviews, tags, ["outdoor", "indoor"], resamples=200)
    # 2x2 table: both 3, A only 1, B only 1, neither 1 -> po = 4/6, pe = (4/6)^2 + (2/6)^2 = 20/36
    assert res["double_reviewed_images"] == 6
    assert res["per_category"]["outdoor"]["kappa"] == pytest.approx((4 / 6 - 20 / 36) / (1 - 20 / 36))  # 0.25
    assert res["per_category"]["outdoor"]["n_units"] == 6
    assert res["per_category"]["indoor"]["kappa"] is None and "only one class" in res["per_category"]["indoor"]["undefined"]
    # pooled over (image, category) units: 12 units, 4 of them "present" for each reviewer
    po, pe = 10 / 12, (4 / 12) ** 2 + (8 / 12) ** 2
    assert res["pooled"]["kappa"] == pytest.approx((po - pe) / (1 - pe))
    html = tags_html({"categories": ["outdoor", "indoor"], "reviewed_images": 7,
                      "prelabel_vs_human": {}, "agreement": res})
    assert "<td>outdoor</td>" in html and "0.250" in html and "double-reviewed: 6" in html
