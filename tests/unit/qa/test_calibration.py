"""Calibrated routing on a larger set with known outcomes: 3000 augmented copies of the 12 photos'
hand-made labels (flips and scales of the boxes), pre-labels and reviews simulated from the gold
labels with per-class score behaviour (a reliable face detector, a person detector whose doubtful
boxes score low, an over-confident cat detector). Works on label tables only: no detector runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelloop import labelstudio, samples
from labelloop.calibration import (calibrate, fit_class, prediction_outcomes, read_policy, save_policy,
                                   set_policy_in_yaml)
from labelloop.config import ConfigError, DEFAULT_CONFIG, load_config
from labelloop.geometry import iou
from labelloop.qa import audit
from labelloop.routing import AUTO, QA_SAMPLE, kept_predictions, route_images

# class -> (P(correct), correct score range, error score range)
BEHAVIOUR = {"person": (0.90, (0.55, 1.0), (0.30, 0.55)),
             "face": (0.95, (0.50, 1.0), (0.30, 0.50)),
             "cat": (0.85, (0.60, 1.0), (0.60, 0.92))}
MISS = 0.003  # share of gold boxes the detector does not find


def gold_photos() -> list[dict]:
    """The 12 photos of the hand-made review: size and gold boxes (xyxy pixels)."""
    out = []
    for rec in labelstudio.read_export(samples.demo_review_path()):
        name = labelstudio.image_ref_path(rec["image_ref"]).rsplit("/", 1)[-1]
        w = h = None
        boxes = []
        for r in rec["regions"]:
            w, h = r["original_width"], r["original_height"]
            boxes.append((r["category"], labelstudio.region_bbox(r)))
        out.append({"name": name, "w": w, "h": h, "boxes": boxes})
    return out


def augment(photos, n, rng):
    """``n`` copies: random horizontal flip and scale 0.5-1.5 of each photo's boxes."""
    images, gold = [], {}
    for k in range(n):
        p = photos[k % len(photos)]
        s = rng.uniform(0.5, 1.5)
        flip = rng.random() < 0.5
        image_id = f"{p['name']}#{k:05d}"
        W = (p["w"] or 500) * s
        boxes = []
        for cat, (x0, y0, x1, y1) in p["boxes"]:
            if flip:
                x0, x1 = W / s - x1, W / s - x0
            boxes.append({"category": cat, "bbox": [x0 * s, y0 * s, x1 * s, y1 * s]})
        images.append({"image_id": image_id, "source_path": image_id})
        gold[image_id] = boxes
    return images, gold


def simulate_predictions(gold, rng):
    preds = []
    for image_id, boxes in gold.items():
        for j, b in enumerate(boxes):
            if rng.random() < MISS:
                continue
            p_ok, ok_rng, err_rng = BEHAVIOUR[b["category"]]
            x0, y0, x1, y1 = b["bbox"]
            w, h = x1 - x0, y1 - y0
            if rng.random() < p_ok:
                box, score = [x0 + 0.01 * w, y0, x1, y1 - 0.01 * h], rng.uniform(*ok_rng)
            else:  # badly located: moved by 40% of its size (IoU about 0.4)
                box, score = [x0 + 0.4 * w, y0 + 0.4 * h, x1 + 0.4 * w, y1 + 0.4 * h], rng.uniform(*err_rng)
            preds.append({"prediction_id": f"{image_id}/{j}", "image_id": image_id, "category": b["category"],
                          "bbox": box, "score": float(score)})
        if not boxes and rng.random() < 0.1:  # a false face on a negative, low score
            preds.append({"prediction_id": f"{image_id}/fp", "image_id": image_id, "category": "face",
                          "bbox": [10.0, 10.0, 60.0, 60.0], "score": float(rng.uniform(0.3, 0.5))})
    return preds


def simulate_reviews(ids, gold, kept):
    """What a reviewer who draws the gold labels returns for ``ids``: REVIEWS and HUMAN_LABELS rows."""
    by_image = {}
    for p in kept:
        by_image.setdefault(p["image_id"], []).append(p)
    reviews, humans = [], []
    for i in ids:
        reviews.append({"image_id": i, "review_id": f"r-{i}", "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"})
        preds = list(by_image.get(i, []))
        for j, g in enumerate(gold[i]):
            match = max(preds, key=lambda p: iou(p["bbox"], g["bbox"]) if p["category"] == g["category"] else -1,
                        default=None)
            linked = match is not None and match["category"] == g["category"] and iou(match["bbox"], g["bbox"]) >= 0.5
            action = "added" if not linked else ("accepted" if iou(match["bbox"], g["bbox"]) >= 0.95 else "corrected")
            humans.append({"image_id": i, "review_id": f"r-{i}", "annotation_id": f"h-{i}-{j}", "category": g["category"],
                           "bbox": g["bbox"], "action": action,
                           "source_prediction_id": match["prediction_id"] if linked else None})
            if linked:
                preds.remove(match)
        humans += [{"image_id": i, "review_id": f"r-{i}", "annotation_id": f"d-{p['prediction_id']}",
                    "category": p["category"], "bbox": p["bbox"], "action": "deleted",
                    "source_prediction_id": p["prediction_id"]} for p in preds]
    return reviews, humans


def true_error_rate(queue, gold, kept, move_iou=0.75):
    """Share of auto-accepted images (auto_accept + qa_sample) whose labels differ from gold."""
    by_image = {}
    for p in kept:
        by_image.setdefault(p["image_id"], []).append(p)
    auto = [q["image_id"] for q in queue if q["route"] in (AUTO, QA_SAMPLE)]
    bad = 0
    for i in auto:
        ps, gs = by_image.get(i, []), list(gold[i])
        ok = len(ps) == len(gs)
        for p in ps:
            m = next((g for g in gs if g["category"] == p["category"] and iou(g["bbox"], p["bbox"]) >= move_iou), None)
            ok = ok and m is not None
            if m is not None:
                gs.remove(m)
        bad += not ok
    return bad / len(auto), len(auto)


def run_policy(images, gold, preds, cfg):
    kept = kept_predictions(preds, cfg)
    queue = route_images(images, preds, cfg)
    review_ids = [q["image_id"] for q in queue if q["route"] != AUTO]
    reviews, humans = simulate_reviews(review_ids, gold, kept)
    qa_ids = {q["image_id"] for q in queue if q["route"] == QA_SAMPLE}
    aud = audit(queue, reviews, humans, [p for p in kept if p["image_id"] in qa_ids])
    err, n_auto = true_error_rate(queue, gold, kept)
    return {"queue": queue, "kept": kept, "reviews": reviews, "humans": humans, "audit": aud,
            "review_share": len(review_ids) / len(images), "true_error": err, "n_auto": n_auto}


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
