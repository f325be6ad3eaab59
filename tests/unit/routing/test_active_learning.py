"""Active learning (labelloop.routing.active_learning): uncertainty measures with hand-computed values,
detector/segmenter disagreement on a real mask, the diversity term on real near-duplicate photos,
the budget, the stored decision, and the double-review share."""

from __future__ import annotations

import math

import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image

from labelloop.formats.labelstudio import build_import_tasks
from labelloop.geometry.masks import encode_rle
from labelloop.routing.active_learning import (
    al_policy_id,
    assign_reviewers,
    class_distribution,
    disagreement,
    image_scores,
    prioritize,
    to_send,
    uncertainty,
)
from labelloop.routing.confidence import route_images
from labelloop.tables.parquet import read_rows, write_rows
from labelloop.tables.schemas import REVIEW_QUEUE
from labelloop.workspace.config import ProjectConfig

K = 3  # categories


def cfg(**al) -> ProjectConfig:
    review = al.pop("review", {})
    return ProjectConfig.model_validate({
        "categories": [{"name": "person", "detector": "x"}, {"name": "face", "detector": "y"},
                       {"name": "cat", "detector": "z"}],
        "routing": {"defaults": {"low": 0.3, "high": 0.8}, "qa_sample_rate": 0.1, "seed": 0},
        "active_learning": al, "review": review})


def ent(p):
    return -sum(x * math.log(x) for x in p if x > 0) / math.log(K + 1)


def test_single_detection_measures_by_hand():
    p = class_distribution({"person": 0.9}, K)
    assert p.tolist() == pytest.approx([0.9, 0.1])
    u = uncertainty(p, K)
    assert u["least_confidence"] == pytest.approx(0.1)
    assert u["margin"] == pytest.approx(1 - (0.9 - 0.1))
    assert u["entropy"] == pytest.approx(ent([0.9, 0.1]))
    # the least sure detection: 0.5 / 0.5
    u = uncertainty(class_distribution({"face": 0.5}, K), K)
    assert (u["least_confidence"], u["margin"]) == pytest.approx((0.5, 1.0))


def test_overlapping_detections_of_two_classes_are_one_confused_object():
    preds = [{"prediction_id": "a", "category": "face", "score": 0.6, "bbox": [10, 10, 50, 50]},
             {"prediction_id": "b", "category": "cat", "score": 0.5, "bbox": [12, 10, 52, 50]}]  # IoU 0.905
    m = image_scores(preds, K)
    p = np.array([0.6, 0.5, 0.4]) / 1.5  # face, cat, background (1 - 0.6)
    assert m["least_confidence"] == pytest.approx(1 - p[0])
    assert m["margin"] == pytest.approx(1 - (p[0] - p[1]))
    assert m["entropy"] == pytest.approx(ent(p))
    # apart, they are two objects and the less sure one (0.5) decides
    apart = [dict(preds[0]), dict(preds[1], bbox=[200, 200, 240, 240])]
    assert image_scores(apart, K)["least_confidence"] == pytest.approx(0.5)
    # a detector's own per-class scores are used as they are
    own = [{"prediction_id": "c", "category": "face", "score": 0.7, "bbox": [0, 0, 9, 9],
            "class_scores": {"face": 0.7, "cat": 0.65}}]
    assert image_scores(own, K)["margin"] == pytest.approx(1 - (0.7 - 0.65) / 1.65)


def test_disagreement_is_one_minus_iou_of_box_and_mask_box():
    horse = ~skimage.data.horse()
    ys, xs = np.nonzero(horse)
    tight = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    rle = encode_rle(horse)
    assert disagreement([{"bbox": tight, "mask": rle}]) == pytest.approx(0.0)
    wide = [tight[0], tight[1], tight[2] + (tight[2] - tight[0]), tight[3]]  # twice as wide
    assert disagreement([{"bbox": wide, "mask": rle}]) == pytest.approx(0.5)
    assert disagreement([{"bbox": tight, "mask": None}]) == 0.0
    assert image_scores([], K, empty=0.7) == {"least_confidence": 0.7, "margin": 0.7, "entropy": 0.7,
                                             "disagreement": 0.0}


@pytest.fixture(scope="module")
def fleet():
    """Real photos: the astronaut, two crops of it (phash distance 6 and 8: near duplicates for
    active learning, not for ingest's threshold of 4) and three other photos."""
    astro = Image.fromarray(skimage.data.astronaut())
    photos = {"astro.png": astro, "astro-crop30.png": astro.crop((30, 0, 512, 512)),
              "astro-crop40.png": astro.crop((40, 0, 512, 512)),
              "chelsea.png": Image.fromarray(skimage.data.chelsea()), "coffee.png": Image.fromarray(skimage.data.coffee()),
              "rocket.png": Image.fromarray(skimage.data.rocket())}
    images = [{"image_id": f"{i:02d}" + name, "source_path": name, "phash": str(imagehash.phash(im))}
              for i, (name, im) in enumerate(photos.items())]
    ph = {r["source_path"]: imagehash.hex_to_hash(r["phash"]) for r in images}
    assert ph["astro.png"] - ph["astro-crop30.png"] == 6 and ph["astro.png"] - ph["astro-crop40.png"] == 8
    # the astronaut and its crops are the most uncertain images (scores near 0.5), the rest less so
    score = {"astro.png": 0.5, "astro-crop30.png": 0.52, "astro-crop40.png": 0.51, "chelsea.png": 0.7,
             "coffee.png": 0.35, "rocket.png": 0.76}
    preds = [{"prediction_id": f"p{r['image_id']}", "image_id": r["image_id"], "category": "person",
              "score": score[r["source_path"]], "bbox": [0, 0, 10, 10], "mask": None} for r in images]
    return images, preds


def route(images, preds, config):
    return assign_reviewers(prioritize(route_images(images, preds, config), images, preds, config), config)


def test_budget_is_not_spent_on_near_duplicates(fleet):
    images, preds = fleet
    rows = {r["source_path"]: r for r in route(images, preds, cfg(budget=3))}
    chosen = sorted((r for r in rows.values() if r["al_decision"] == "selected"), key=lambda r: r["al_rank"])
    assert [r["source_path"] for r in chosen] == ["astro.png", "coffee.png", "chelsea.png"]
    for crop, d in (("astro-crop30.png", 6), ("astro-crop40.png", 8)):
        assert rows[crop]["al_decision"] == "near_duplicate"
        assert f"phash distance {d} <= 10" in rows[crop]["al_reason"] and "astro.png" in rows[crop]["al_reason"]
    assert rows["rocket.png"]["al_decision"] == "over_budget"
    # least confidence alone, with no diversity, would spend the budget on the astronaut three times
    plain = route(images, preds, cfg(budget=3, strategy="least_confidence", diversity_weight=0.0, min_phash_distance=0))
    first = sorted((r for r in plain if r["al_decision"] == "selected"), key=lambda r: r["al_rank"])
    assert [r["source_path"] for r in first] == ["astro.png", "astro-crop40.png", "astro-crop30.png"]


def test_scores_and_decisions_are_stored_per_image(tmp_path, fleet):
    images, preds = fleet
    config = cfg(budget=3, strategy="margin")
    rows = route(images, preds, config)
    path = write_rows(rows, REVIEW_QUEUE, tmp_path / "q.parquet")
    back = {r["source_path"]: r for r in read_rows(path, REVIEW_QUEUE)}
    astro = back["astro.png"]
    assert astro["al_strategy"] == "margin" and astro["al_decision"] == "selected" and astro["al_rank"] == 1
    assert astro["margin"] == pytest.approx(1.0) and astro["least_confidence"] == pytest.approx(0.5)
    assert astro["al_uncertainty"] == pytest.approx(1.0)
    assert astro["al_score"] == pytest.approx(0.7 * 1.0 + 0.3 * 1.0) and astro["priority"] == astro["al_score"]
    coffee = back["coffee.png"]  # chosen second: phash distance to the astronaut / 64 is its diversity
    ph = {i["source_path"]: imagehash.hex_to_hash(i["phash"]) for i in images}
    d = ph["coffee.png"] - ph["astro.png"]
    assert coffee["diversity"] == pytest.approx(d / 64)
    assert coffee["al_score"] == pytest.approx(0.7 * coffee["al_uncertainty"] + 0.3 * d / 64)
    assert all(r["al_policy_id"] == al_policy_id(config) for r in back.values())
    sent = {r["source_path"] for r in to_send(list(back.values()))}
    assert sent == {"astro.png", "coffee.png", "chelsea.png"}


def test_without_a_budget_everything_is_sent_and_qa_sample_always(fleet):
    images, preds = fleet
    extra_img = {"image_id": "99sure", "source_path": "sure.png", "phash": images[0]["phash"]}
    extra = {"prediction_id": "p99", "image_id": "99sure", "category": "person", "score": 0.95,
             "bbox": [0, 0, 10, 10], "mask": None}
    rows = route(images + [extra_img], preds + [extra], cfg(budget=1))
    by = {r["source_path"]: r for r in rows}
    assert by["sure.png"]["route"] == "qa_sample" and by["sure.png"]["al_decision"] == "qa_sample"
    assert {r["source_path"] for r in to_send(rows)} == {"astro.png", "sure.png"}
    rows = route(images, preds, cfg())  # no budget: everything is sent, near duplicates last
    assert all(r["al_decision"] == "selected" for r in rows)
    order = [r["source_path"] for r in sorted(rows, key=lambda r: r["al_rank"])]
    assert order[:4] == ["astro.png", "coffee.png", "chelsea.png", "rocket.png"]
    assert sorted(order[4:]) == ["astro-crop30.png", "astro-crop40.png"]
    assert all("a near duplicate of astro" in r["al_reason"] for r in rows if r["al_rank"] > 4)


def test_double_review_share_is_seeded_and_reaches_the_tasks(fleet):
    images, preds = fleet
    config = cfg(review={"double_review_share": 0.5})
    rows = route(images, preds, config)
    sent = to_send(rows)
    doubled = sorted(r["source_path"] for r in sent if r["reviewers_required"] == 2)
    assert len(sent) == 6 and len(doubled) == 3
    assert doubled == sorted(r["source_path"] for r in route(list(reversed(images)), preds, config)
                             if r["reviewers_required"] == 2)  # independent of order
    assert all(r["reviewers_required"] is None for r in rows if r not in sent)
    single = to_send(route(images, preds, cfg(review={"double_review_share": 0})))
    assert [r["reviewers_required"] for r in single] == [1] * 6
    full = [dict(r, uri=f"inbox/b/{r['source_path']}", width=10, height=10) for r in images]
    tasks, _ = build_import_tasks(full, preds, "m", "b", reviewers={r["image_id"]: r["reviewers_required"] for r in sent})
    assert sorted(t["data"]["source_path"] for t in tasks if t["data"].get("reviewers_required") == 2) == doubled
    assert al_policy_id(config) != al_policy_id(cfg())
