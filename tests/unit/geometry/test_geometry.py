"""IoU, matching and box validation (labelloop.geometry.boxes) with hand-computed values."""

import math

import numpy as np
import pytest

from labelloop.geometry.boxes import (
    box_problem,
    clip,
    enclosing_box,
    greedy_match,
    iou,
    iou_matrix,
    ls_rotation,
    ls_to_xyxy,
    rotated_rect_corners,
)


def test_iou_hand_computed():
    assert iou([0, 0, 10, 10], [0, 0, 10, 12]) == pytest.approx(100 / 120)
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    # the Label Studio fixture's corrected person box (NOTES.md)
    assert iou([30, 40, 360, 512], [20, 15, 365, 512]) == pytest.approx(155760 / 171465)


def test_iou_matrix_matches_pairwise():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    b = np.array([[0, 0, 10, 12], [100, 100, 110, 110], [5, 5, 15, 15]], float)
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert m[i, j] == pytest.approx(iou(a[i], b[j]))
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_visits_by_score_and_respects_class():
    truths = [[0, 0, 10, 10]]
    preds = [[0, 0, 10, 11], [0, 0, 10, 10]]
    # the higher-scored prediction takes the truth even though the other overlaps more
    pairs = greedy_match(preds, truths, 0.5, order_a=[0.9, 0.5])
    assert pairs == [(0, 0, pytest.approx(100 / 110))]
    assert greedy_match(preds, truths, 0.5, ["cat", "cat"], ["dog"]) == []
    assert greedy_match(preds, truths, 0.5, ["cat", "cat"], ["dog"], same_class=False)[0][:2] == (0, 0)


def test_box_problem_and_clip():
    assert box_problem([0, 0, 10, 10], 10, 10) is None
    assert "zero or negative area" in box_problem([5, 5, 5, 9], 10, 10)
    assert "outside the 10x10 image" in box_problem([0, 0, 11, 10], 10, 10)
    # plain numbers, named as xyxy pixels: never numpy 2's "np.float64(713.7)"
    import numpy as np
    assert box_problem(np.array([700.0, 5.0, 713.7, 9.0]), 700, 10) == \
        "bbox [700.0, 5.0, 713.7, 9.0] (xyxy px) outside the 700x10 image"
    assert "non-finite" in box_problem([0, float("nan"), 1, 1], 10, 10)
    assert clip([-3, -1, 12, 5], 10, 10) == [0.0, 0.0, 10.0, 5.0]


def test_rotated_label_studio_box_is_read_as_its_enclosing_box_never_unrotated():
    # 10 x 20 px box at (40, 30) rotated 90 degrees clockwise about its top-left corner:
    # its width now points down (+y) and its height to the left (-x)
    value = {"x": 40, "y": 30, "width": 10, "height": 20, "rotation": 90}
    assert ls_to_xyxy(value, 100, 100) == pytest.approx([20, 30, 40, 40])
    # 30 degrees on a non-square image: corners computed in pixels, not in percent
    value = {"x": 10, "y": 10, "width": 20, "height": 10, "rotation": 30}
    w, h = 200, 100  # box 40 x 10 px at (20, 10)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    corners = [(20, 10), (20 + 40 * c, 10 + 40 * s), (20 + 40 * c - 10 * s, 10 + 40 * s + 10 * c), (20 - 10 * s, 10 + 10 * c)]
    want = [min(x for x, _ in corners), min(y for _, y in corners), max(x for x, _ in corners), max(y for _, y in corners)]
    assert ls_to_xyxy(value, w, h) == pytest.approx(want)
    assert ls_rotation(value) == 30 and ls_rotation({"rotation": -30}) == 330 and ls_rotation({"rotation": 360}) == 0
    assert ls_to_xyxy({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 360}, 100, 100) == pytest.approx([1, 1, 6, 6])
    with pytest.raises(ValueError, match="numeric"):
        ls_to_xyxy({"x": "a", "y": 1, "width": 5, "height": 5}, 100, 100)
    with pytest.raises(ValueError, match="finite"):
        ls_to_xyxy({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": float("inf")}, 100, 100)


def test_cvat_rotation_is_about_the_centre():
    corners = rotated_rect_corners(10, 20, 40, 10, 90, pivot="center")  # centre (30, 25)
    assert enclosing_box(corners) == pytest.approx([25, 5, 35, 45])
