"""Confidence routing (labelloop.routing.confidence): routes, reasons, priority, the QA sample, policy_id."""

from __future__ import annotations

import hashlib
import json
import random
import re

import pytest

from labelloop.routing.confidence import AUTO, QA_SAMPLE, REVIEW, kept_predictions, route_images
from labelloop.workspace.config import DEFAULT_CONFIG, ProjectConfig, load_config


def make_config(**routing) -> ProjectConfig:
    """face has its own thresholds (0.3 / 0.75); person uses the defaults (0.3 / 0.8)."""
    return ProjectConfig.model_validate(
        {
            "project": "t",
            "categories": [
                {"name": "person", "detector": "opencv-hog-person"},
                {"name": "face", "detector": "opencv-haar-frontalface_default",
                 "thresholds": {"low": 0.3, "high": 0.75}},
            ],
            "routing": {"defaults": {"low": 0.3, "high": 0.8}, "qa_sample_rate": 0.10, "seed": 0, **routing},
        }
    )


CFG = make_config()


def img(iid: str) -> dict:
    return {"image_id": iid, "source_path": f"{iid}.jpg"}


def pred(iid: str, category: str, score: float, n: int = 0) -> dict:
    return {"prediction_id": f"{iid}-{category}-{n}", "image_id": iid, "category": category,
            "score": score, "bbox": [0.0, 0.0, 10.0, 10.0]}


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["image_id"]: r for r in rows}


def sample_key(seed: int, iid: str) -> str:
    return hashlib.sha256(f"{seed}:{iid}".encode()).hexdigest()


def auto_fleet(n: int) -> tuple[list[dict], list[dict]]:
    """``n`` images that each have one person prediction at 0.9 (auto-accepted)."""
    images = [img(f"auto-{i:02d}") for i in range(n)]
    return images, [pred(i["image_id"], "person", 0.9) for i in images]


def test_shipped_config_has_the_thresholds_these_tests_assume():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.thresholds("face").model_dump() == {"low": 0.3, "high": 0.75}
    assert cfg.thresholds("person").model_dump() == {"low": 0.3, "high": 0.8}
    assert cfg.routing.qa_sample_rate == 0.10 and cfg.routing.seed == 0


def test_kept_predictions_drop_below_low_and_unknown_categories():
    preds = [pred("a", "face", 0.29), pred("a", "face", 0.3, 1), pred("a", "person", 0.95),
             pred("a", "dog", 0.99)]
    kept = kept_predictions(preds, CFG)
    assert [p["prediction_id"] for p in kept] == ["a-face-1", "a-person-0"]


def test_three_routes_with_reasons_priorities_and_per_category_thresholds():
    images = [img(i) for i in ("face_hi", "person_mid", "mixed", "nothing", "all_low", "a1", "a2")]
    preds = [
        # 0.76 >= face high 0.75 -> trusted; the 0.29 face is dropped (below low 0.3)
        pred("face_hi", "face", 0.76), pred("face_hi", "face", 0.29, 1),
        # 0.76 < person high 0.8 -> review, though the same score auto-accepts a face
        pred("person_mid", "person", 0.76),
        # two below high; the lowest is the face at 0.5
        pred("mixed", "person", 0.6), pred("mixed", "face", 0.5, 1), pred("mixed", "person", 0.9, 2),
        # only predictions below low: nothing kept
        pred("all_low", "person", 0.29), pred("all_low", "face", 0.1, 1),
        # two more auto-accepted images (the QA sample takes one of the three auto images)
        pred("a1", "person", 0.8), pred("a1", "face", 0.75, 1),  # exactly at high: auto
        pred("a2", "person", 0.95),
    ]
    rows = route_images(images, preds, CFG)
    got = by_id(rows)
    policy = CFG.policy_id()
    assert all(r["policy_id"] == policy for r in rows)

    assert got["person_mid"] == {
        "image_id": "person_mid", "source_path": "person_mid.jpg", "policy_id": policy, "n_predictions": 1,
        "min_score": 0.76, "route": REVIEW, "priority": 0.24,
        "reason": "1 of 1 below high threshold (lowest person 0.760 < 0.8)",
    }
    assert got["mixed"]["route"] == REVIEW
    assert got["mixed"]["reason"] == "2 of 3 below high threshold (lowest face 0.500 < 0.75)"
    assert got["mixed"]["priority"] == 0.5 and got["mixed"]["min_score"] == 0.5
    assert got["mixed"]["n_predictions"] == 3
    for iid in ("nothing", "all_low"):
        assert got[iid]["route"] == REVIEW
        assert got[iid]["reason"] == "no prediction at or above its low threshold"
        assert got[iid]["priority"] == 1.0
        assert got[iid]["n_predictions"] == 0 and got[iid]["min_score"] is None

    # the three auto images: one QA-sampled (smallest sha256(f"0:{id}")), the others auto_accept
    autos = ["face_hi", "a1", "a2"]
    chosen = min(autos, key=lambda i: sample_key(0, i))
    assert chosen == "face_hi"
    assert got["face_hi"] == {
        "image_id": "face_hi", "source_path": "face_hi.jpg", "policy_id": policy, "n_predictions": 1,
        "min_score": 0.76, "route": QA_SAMPLE, "priority": 0.0,
        "reason": "QA sample of auto-accepted images (10%, seed 0); all 1 predictions at or above high threshold",
    }
    assert got["a1"] == {
        "image_id": "a1", "source_path": "a1.jpg", "policy_id": policy, "n_predictions": 2,
        "min_score": 0.75, "route": AUTO, "priority": 0.25,
        "reason": "all 2 predictions at or above high threshold",
    }
    assert got["a2"]["route"] == AUTO and got["a2"]["priority"] == 0.05

    # least confidence first, ties by source_path; the QA sample (priority 0) last
    assert [r["image_id"] for r in rows] == ["all_low", "nothing", "mixed", "a1", "person_mid", "a2", "face_hi"]


def test_only_qa_and_review_when_every_image_is_auto_or_none():
    # a single auto-accepted image is always the QA sample (at least one)
    rows = route_images([img("x")], [pred("x", "person", 0.99)], CFG)
    assert [(r["route"], r["priority"]) for r in rows] == [(QA_SAMPLE, 0.0)]
    # no auto-accepted image: no QA sample
    rows = route_images([img("x"), img("y")], [pred("x", "person", 0.5)], CFG)
    assert {r["route"] for r in rows} == {REVIEW}


@pytest.mark.parametrize("n_auto, k", [(1, 1), (5, 1), (10, 1), (11, 2), (20, 2), (25, 3), (30, 3), (31, 4)])
def test_qa_sample_size_is_ceil_of_ten_percent_at_least_one(n_auto, k):
    images, preds = auto_fleet(n_auto)
    images.append(img("review-me"))
    preds.append(pred("review-me", "person", 0.5))
    rows = route_images(images, preds, CFG)
    routes = [r["route"] for r in rows]
    assert routes.count(QA_SAMPLE) == k
    assert routes.count(AUTO) == n_auto - k
    assert routes.count(REVIEW) == 1


def test_qa_sample_is_reproducible_and_independent_of_input_order():
    images, preds = auto_fleet(25)
    first = route_images(images, preds, CFG)
    shuffled_images, shuffled_preds = images[:], preds[:]
    random.Random(3).shuffle(shuffled_images)
    random.Random(4).shuffle(shuffled_preds)
    second = route_images(shuffled_images, shuffled_preds, CFG)
    assert first == second
    sample = sorted(r["image_id"] for r in first if r["route"] == QA_SAMPLE)
    expected = sorted(sorted((i["image_id"] for i in images), key=lambda i: sample_key(0, i))[:3])
    assert sample == expected == ["auto-07", "auto-11", "auto-13"]


def test_other_seed_picks_by_sha256_of_seed_and_image_id():
    images, preds = auto_fleet(8)
    ids = [i["image_id"] for i in images]
    pick0 = min(ids, key=lambda i: sample_key(0, i))
    pick7 = min(ids, key=lambda i: sample_key(7, i))
    assert (pick0, pick7) == ("auto-07", "auto-03")  # different seeds really pick differently here
    for seed, want in ((0, pick0), (7, pick7)):
        rows = route_images(images, preds, make_config(seed=seed))
        assert [r["image_id"] for r in rows if r["route"] == QA_SAMPLE] == [want]
        qa = by_id(rows)[want]
        assert qa["reason"].startswith(f"QA sample of auto-accepted images (10%, seed {seed}); ")


def test_policy_id_is_the_hash_of_thresholds_rate_and_seed():
    body = {
        "thresholds": {"person": {"low": 0.3, "high": 0.8}, "face": {"low": 0.3, "high": 0.75}},
        "qa_sample_rate": 0.1,
        "seed": 0,
    }
    want = "policy-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    assert CFG.policy_id() == want
    assert re.fullmatch(r"policy-[0-9a-f]{12}", want)


def _changed(mutate) -> ProjectConfig:
    raw = CFG.model_dump()
    mutate(raw)
    return ProjectConfig.model_validate(raw)


def test_policy_id_changes_with_thresholds_rate_and_seed_only():
    base = CFG.policy_id()

    def face_high(r):
        r["categories"][1]["thresholds"]["high"] = 0.7

    def default_low(r):
        r["routing"]["defaults"]["low"] = 0.35

    def rate(r):
        r["routing"]["qa_sample_rate"] = 0.2

    def seed(r):
        r["routing"]["seed"] = 1

    for mutate in (face_high, default_low, rate, seed):
        assert _changed(mutate).policy_id() != base, mutate.__name__

    def max_side(r):
        r["prelabeler"]["max_side"] = 1024

    def project(r):
        r["project"] = "other"

    def masks(r):
        r["categories"][0]["masks"] = True

    def explicit_defaults(r):  # the same numbers written out per category: same policy
        r["categories"][0]["thresholds"] = {"low": 0.3, "high": 0.8}

    for mutate in (max_side, project, masks, explicit_defaults):
        assert _changed(mutate).policy_id() == base, mutate.__name__


def test_changing_a_threshold_reroutes_and_stamps_the_new_policy():
    images = [img("a"), img("b")]
    preds = [pred("a", "face", 0.72), pred("b", "face", 0.9)]
    before = by_id(route_images(images, preds, CFG))
    assert before["a"]["route"] == REVIEW
    looser = _changed(lambda r: r["categories"][1]["thresholds"].update(high=0.7))
    after = by_id(route_images(images, preds, looser))
    assert after["a"]["route"] in (AUTO, QA_SAMPLE)
    assert after["a"]["policy_id"] == looser.policy_id() != before["a"]["policy_id"]


def test_reason_shows_a_score_that_is_below_the_threshold():
    rows = route_images([img("a")], [pred("a", "face", 0.749)], CFG)
    (row,) = rows
    assert row["route"] == REVIEW
    m = re.search(r"lowest face ([0-9.]+) < ([0-9.]+)\)", row["reason"])
    assert float(m.group(1)) < float(m.group(2)), row["reason"]
