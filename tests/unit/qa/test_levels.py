"""The level recommendation (labelloop.qa.levels): mask-fill ratios of real COCO RLE masks
(pycocotools), the thresholds, the next level's cost, and ``labelloop levels``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labelloop.geometry.masks import encode_rle
from labelloop.qa.levels import FILL_BOX_ABOVE, fill_ratio, mask_fills, recommend_levels
from labelloop.workspace import repo
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.helpers import cli

H = W = 100


def diagonal_pen(x0: int, y0: int, side: int, width: int = 3) -> np.ndarray:
    """A thin diagonal stroke across the square box [x0, y0, x0 + side, y0 + side]."""
    m = np.zeros((H, W), np.uint8)
    for i in range(side):
        m[y0 + i, x0 + max(0, i - width // 2): x0 + min(side, i + width // 2 + 1)] = 1
    return m


def filled(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def ellipse(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return ((((xx + 0.5 - cx) / a) ** 2 + ((yy + 0.5 - cy) / b) ** 2) <= 1).astype(np.uint8)


def label(i: int, category: str, bbox, mask=None, origin="human", prediction_id=None) -> dict:
    return {"label_id": f"lb-{category}-{i}", "image_id": f"img{i}", "category": category, "bbox": list(bbox),
            "mask": mask, "score": None, "origin": origin, "model_id": None, "checkpoint_sha256": None,
            "prediction_id": prediction_id, "annotation_id": None, "annotator": "r1", "action": "added",
            "review_id": None, "reviewed_at": None, "route": None, "route_reason": None, "policy_id": None,
            "keypoints": None, "iscrowd": None, "attributes": None}


def config() -> ProjectConfig:
    return ProjectConfig.model_validate({"categories": [
        {"name": "pen", "detector": "opencv-hog-person", "level": "box"},
        {"name": "ball", "detector": "opencv-hog-person", "level": "mask"},
        {"name": "person", "detector": "opencv-hog-person", "level": "box"},
        {"name": "outdoor", "level": "tag"}]})


def test_fill_ratio_of_real_rles():
    assert fill_ratio(encode_rle(filled(10, 10, 50, 30)), [10, 10, 50, 30]) == 1.0
    pen = fill_ratio(encode_rle(diagonal_pen(0, 0, 60)), [0, 0, 60, 60])
    assert pen == pytest.approx(3 * 60 / 3600, abs=1e-3) and pen < 0.1
    # a disc fills about pi/4 of its box
    assert fill_ratio(encode_rle(ellipse(0, 0, 80, 80)), [0, 0, 80, 80]) == pytest.approx(math.pi / 4, abs=0.01)
    assert fill_ratio(encode_rle(filled(0, 0, 5, 5)), [3, 3, 3, 9]) is None  # zero-area box


def examples():
    labels, preds = [], {}
    for i in range(5):  # pens: human masks, thin diagonals
        labels.append(label(i, "pen", [i, i, i + 60, i + 60], encode_rle(diagonal_pen(i, i, 60))))
    for i in range(3):  # balls: human masks of discs
        labels.append(label(10 + i, "ball", [0, 0, 80, 80], encode_rle(ellipse(0, 0, 80, 80))))
    for i in range(3):  # balls: reviewed boxes whose pre-label carried a (SAM) mask
        pid = f"p{i}"
        preds[pid] = {"prediction_id": pid, "bbox": [10.0, 10.0, 50.0, 30.0], "mask": encode_rle(filled(10, 10, 50, 30))}
        labels.append(label(20 + i, "ball", [9, 9, 51, 31], None, prediction_id=pid))
    # auto-accepted model masks are not evidence; people: one human mask only
    labels.append(label(30, "ball", [0, 0, 60, 60], encode_rle(diagonal_pen(0, 0, 60)), origin="model"))
    labels.append(label(31, "person", [0, 0, 40, 80], encode_rle(filled(0, 0, 40, 80))))
    return labels, preds


def test_recommendation_per_class():
    labels, preds = examples()
    fills = mask_fills(labels, preds)
    assert (len(fills["ball"]["human"]), len(fills["ball"]["prelabel"])) == (3, 3)
    advice = {a["category"]: a for a in recommend_levels(config(), labels, preds, tagged_images={"outdoor": 7})}
    pen, ball, person, outdoor = advice["pen"], advice["ball"], advice["person"], advice["outdoor"]
    assert (pen["level"], pen["recommended"], pen["masks"], pen["objects"]) == ("box", "mask", 5, 5)
    assert pen["fill_median"] < 0.1
    assert (pen["next_level"], pen["next_level_cost"], pen["currency"]) == ("mask", round(5 * 1.55, 2), "USD")
    # discs (~0.785) and full rectangles (1.0): median of 6 is >= pi/4, masks add little
    assert ball["fill_median"] >= FILL_BOX_ABOVE
    assert (ball["recommended"], ball["objects"], ball["next_level"], ball["next_level_cost"]) == ("box", 7, None, None)
    assert ball["fill_sources"] == {"human": 3, "prelabel": 3}
    assert (person["recommended"], person["masks"]) == ("box", 1) and "not enough masks" in person["reason"]
    assert (outdoor["recommended"], outdoor["objects"], outdoor["next_level_cost"]) == ("tag", 7, round(7 * 0.06, 2))


def test_levels_command_reads_the_workspace_and_leaves_the_config(tmp_path):
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    before = (ws.root / "labelloop.yaml").read_bytes()
    labels = [label(i, "person", [i, i, i + 60, i + 60], encode_rle(diagonal_pen(i, i, 60))) for i in range(5)]
    repo.write_labels(ws, labels, [])
    out = json.loads(cli(ws.root, "levels", "--json").output)
    person = next(a for a in out if a["category"] == "person")
    assert (person["level"], person["recommended"], person["masks"]) == ("mask", "mask", 5)
    text = cli(ws.root, "levels").output
    assert "person: level mask -> recommended mask (median fill 0.05 over 5 masks)" in text
    assert (ws.root / "labelloop.yaml").read_bytes() == before
