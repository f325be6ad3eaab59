"""Calibrated routing on a larger set with known outcomes: 3000 augmented copies of the 12 photos'
hand-made labels (flips and scales of the boxes), pre-labels and reviews simulated from the gold
labels with per-class score behaviour (a reliable face detector, a person detector whose doubtful
boxes score low, an over-confident cat detector). Works on label tables only: no detector runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelloop.qa.calibration import (
    calibrate,
    fit_class,
    prediction_outcomes,
    read_policy,
    save_policy,
    set_policy_in_yaml,
)
from labelloop.workspace.config import DEFAULT_CONFIG, ConfigError, load_config
from support.calibration_sim import augment, run_policy, simulate_predictions
from support.qa_helpers import gold_photos


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(7)
    photos = gold_photos()
    assert sum(len(p["boxes"]) for p in photos) == 7
    images, gold = augment(photos, 3000, rng)
    preds = simulate_predictions(gold, rng)
    return images[:1500], images[1500:], gold, preds


def test_calibration_lowers_review_without_raising_the_error_rate(sim, tmp_path):
    history, future, gold, preds = sim
    cfg = load_config(DEFAULT_CONFIG)
    hist = run_policy(history, gold, preds, cfg)
    reviewed = {r["image_id"]: r for r in hist["reviews"]}
    policy = calibrate(cfg, [p for p in hist["kept"]], [i["image_id"] for i in history], hist["humans"], reviewed)
    t = policy["thresholds"]
    # per class: faces and persons are trusted lower, the over-confident cat detector is not trusted
    assert t["cat"]["high"] > 0.9 > 0.6 > t["person"]["high"] and t["face"]["high"] < 0.6
    assert policy["per_class"]["person"]["ci_low"] >= 0.98 and policy["per_class"]["face"]["ci_low"] >= 0.98
    # store it, point labelloop.yaml at it, and route the next 1500 images with it
    (tmp_path / "labelloop.yaml").write_text(DEFAULT_CONFIG.read_text())
    path = save_policy(tmp_path, policy)
    set_policy_in_yaml(tmp_path / "labelloop.yaml", path.relative_to(tmp_path).as_posix())
    text = (tmp_path / "labelloop.yaml").read_text()
    assert f"calibrated_policy: \"calibration/{policy['policy_id']}.json\"" in text and "# labelloop project settings" in text
    new_cfg = load_config(tmp_path / "labelloop.yaml")
    assert new_cfg.thresholds("cat").high == t["cat"]["high"] and new_cfg.policy_id() != cfg.policy_id()
    stored = read_policy(tmp_path, path.relative_to(tmp_path).as_posix())
    assert stored["data"]["predictions"] == len(policy["outcomes"]) and "outcomes" not in stored
    assert (tmp_path / "calibration" / stored["data"]["outcomes_file"]).is_file()

    old = run_policy(future, gold, preds, cfg)
    new = run_policy(future, gold, preds, new_cfg)
    # 8 of the 12 photos are negatives with nothing detected: they always go to review
    assert new["review_share"] < old["review_share"] - 0.05  # 0.92 -> 0.81 of images
    assert new["true_error"] <= old["true_error"]  # the known outcomes
    assert new["true_error"] < 0.02 < old["true_error"]  # 0.3% vs 3.7% of auto-accepted images
    assert new["audit"]["n_audited"] > old["audit"]["n_audited"]
    assert new["audit"]["error_rate"] <= old["audit"]["error_rate"]  # the audited estimate is not raised
    assert new["audit"]["status"] != "fail"
    est = policy["estimate"]
    assert est["review_share_after"] < est["review_share_before"]


def test_fit_class_rules():
    few = fit_class([(0.9, True)] * 5, 0.98, 30)
    assert few["threshold"] is None and "only 5 reviewed predictions" in few["reason"]
    bad = fit_class([(0.9, False)] * 50, 0.98, 30)
    assert bad["threshold"] == 1.0 and "every prediction of this class goes to review" in bad["reason"]
    # 200 correct above 0.5, 20 errors at 0.2-0.3: the lowest admissible threshold is 0.5
    items = [(0.5 + k / 400, True) for k in range(200)] + [(0.2 + k / 200, False) for k in range(20)]
    fit = fit_class(items, 0.98, 30)
    assert fit["threshold"] == pytest.approx(0.5) and fit["precision"] == 1.0 and fit["ci_low"] >= 0.98


def test_outcomes_match_the_reviewer():
    preds = [{"image_id": "i", "prediction_id": "a", "category": "cat", "bbox": [0, 0, 10, 10], "score": 0.9},
             {"image_id": "i", "prediction_id": "b", "category": "cat", "bbox": [20, 20, 30, 30], "score": 0.8}]
    humans = [{"image_id": "i", "review_id": "r", "category": "cat", "bbox": [0, 0, 10, 11], "action": "accepted"},
              {"image_id": "i", "review_id": "r", "category": "dog", "bbox": [20, 20, 30, 30], "action": "corrected"},
              {"image_id": "i", "review_id": "r", "category": "cat", "bbox": [50, 50, 60, 60], "action": "added"}]
    rows, missed = prediction_outcomes(preds, humans, {"i": {"review_id": "r"}})
    assert [(r["prediction_id"], r["correct"]) for r in rows] == [("a", True), ("b", False)]
    assert missed == {"i": 2}


def test_missing_policy_file_is_a_config_error(tmp_path):
    (tmp_path / "labelloop.yaml").write_text(DEFAULT_CONFIG.read_text())
    set_policy_in_yaml(tmp_path / "labelloop.yaml", "calibration/cal-nope.json")
    with pytest.raises(ConfigError, match="calibrated_policy: .*cal-nope.json not found"):
        load_config(tmp_path / "labelloop.yaml")
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "cal-nope.json").write_text(json.dumps({"thresholds": {"dog": {"low": 0.1, "high": 0.5}}}))
    with pytest.raises(ConfigError, match="unknown categories \\['dog'\\]"):
        load_config(tmp_path / "labelloop.yaml")
    set_policy_in_yaml(tmp_path / "labelloop.yaml", "../outside.json")
    with pytest.raises(ConfigError, match="outside the workspace"):
        load_config(tmp_path / "labelloop.yaml")
