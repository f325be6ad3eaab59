"""COCO person keypoints through Label Studio (labelloop.geometry.keypoints): the labeling config, the
visibility convention both ways (export -> Label Studio result -> import), instance grouping."""

from __future__ import annotations

import copy
import hashlib
import xml.etree.ElementTree as ET

import pytest

from labelloop.formats.labelstudio import build_import_tasks, label_config_xml, parse_export
from labelloop.geometry.keypoints import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON, num_keypoints
from labelloop.review.importer import import_review
from support.helpers import skimage_data

NAMES = list(COCO_PERSON_KEYPOINTS)
KP = {"person": NAMES}
CATS = ["person", "face", "cat"]
ASTRO = {"image_id": hashlib.sha256((skimage_data() / "astronaut.png").read_bytes()).hexdigest(),
         "uri": "inbox/b1/astronaut.png", "source_path": "astronaut.png", "width": 512, "height": 512,
         "status": "ok", "duplicate_of": None}


def flat(**pts):
    out = [0.0] * 51
    for name, (x, y, v) in pts.items():
        i = NAMES.index(name)
        out[3 * i:3 * i + 3] = [float(x), float(y), float(v)]
    return out


PERSON_KP = flat(nose=(215.0, 120.5, 2), left_eye=(230.0, 101.0, 1), left_ankle=(300.0, 505.0, 2))


def test_coco_person_schema():
    assert len(NAMES) == 17 and NAMES[0] == "nose" and NAMES[-1] == "right_ankle"
    assert len(COCO_PERSON_SKELETON) == 19 and all(1 <= a <= 17 and 1 <= b <= 17 for a, b in COCO_PERSON_SKELETON)
    assert num_keypoints(PERSON_KP) == 3


def test_label_config_has_keypoints_and_the_visibility_choice():
    root = ET.fromstring(label_config_xml(CATS, keypoints=KP))
    kp = root.find("KeyPointLabels")
    assert kp.get("name") == "keypoint" and kp.get("toName") == "image"
    assert [lab.get("value") for lab in kp.findall("Label")] == NAMES
    vis = root.find("Choices")
    assert (vis.get("name"), vis.get("perRegion"), vis.get("whenTagName")) == ("keypoint_visibility", "true", "keypoint")
    assert [c.get("value") for c in vis.findall("Choice")] == ["visible", "occluded"]
    with pytest.raises(ValueError, match="not one of"):
        label_config_xml(CATS, keypoints={"dog": NAMES})


def exported_task():
    pred = {"prediction_id": "pr-1", "image_id": ASTRO["image_id"], "category": "person",
            "bbox": [150.0, 60.0, 380.0, 512.0], "score": 0.7, "keypoints": PERSON_KP}
    tasks, _ = build_import_tasks([ASTRO], [pred], "m", "b1", keypoints=KP)
    return tasks[0]


def test_export_writes_the_convention():
    result = exported_task()["predictions"][0]["result"]
    kps = [r for r in result if r["type"] == "keypointlabels"]
    assert [r["id"] for r in kps] == ["pr-1:nose", "pr-1:left_eye", "pr-1:left_ankle"]  # v = 0 points left out
    nose = kps[0]
    assert nose["value"]["keypointlabels"] == ["nose"] and nose["from_name"] == "keypoint"
    assert nose["value"]["x"] == pytest.approx(100 * 215 / 512) and nose["value"]["y"] == pytest.approx(100 * 120.5 / 512)
    (vis,) = [r for r in result if r["type"] == "choices"]
    assert vis["id"] == "pr-1:left_eye" and vis["value"]["choices"] == ["occluded"]
    assert vis["from_name"] == "keypoint_visibility"


def as_export(result, ann_id=1):
    task = exported_task()
    return [{"id": 5, "project": 2, "data": task["data"], "annotations": [
        {"id": ann_id, "completed_by": 4, "created_at": "2026-11-29T10:00:00Z", "updated_at": "2026-11-29T10:00:00Z",
         "was_cancelled": False, "result": result}]}]


def do_import(export):
    return import_review(parse_export(export), file_name="e.json", import_sha256="0" * 64,
                         source="label-studio/project-2", images=[ASTRO], exported=[], known_review_keys=set(),
                         categories=CATS, keypoint_schema=KP)


def test_import_reads_the_convention_back():
    res = do_import(as_export(exported_task()["predictions"][0]["result"]))
    assert res["rejects"] == []
    (h,) = res["human_labels"]
    assert h["keypoints"] == pytest.approx(PERSON_KP)  # v 2 / 1 / 0 as exported


def test_reviewer_edits_occlusion_and_adds_a_point_inside_the_box():
    result = copy.deepcopy(exported_task()["predictions"][0]["result"])
    result = [r for r in result if r["type"] != "choices"]  # the reviewer cleared "occluded" on left_eye
    for r in list(result):
        if r["id"] == "pr-1:nose":
            result.append(copy.deepcopy(r) | {"type": "choices", "from_name": "keypoint_visibility",
                                              "value": dict(r["value"], choices=["occluded"])})
    added = copy.deepcopy(next(r for r in result if r["id"] == "pr-1:left_ankle"))
    added["id"] = "Xy12AbCd"  # drawn by hand: Label Studio's random id, grouped by the box containing it
    added["value"].update(x=100 * 260 / 512, y=100 * 505 / 512, keypointlabels=["right_ankle"])
    result.append(added)
    (h,) = do_import(as_export(result))["human_labels"]
    want = flat(nose=(215.0, 120.5, 1), left_eye=(230.0, 101.0, 2), left_ankle=(300.0, 505.0, 2),
                right_ankle=(260.0, 505.0, 2))
    assert h["keypoints"] == pytest.approx(want)


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(id="free", value=dict(r["value"], x=1.0, y=1.0)), "lies in no box"),
    (lambda r: r["value"].update(keypointlabels=["tail"]), "unknown keypoint 'tail'"),
    (lambda r: r["value"].update(x=120.0), "outside the 512x512 image"),
])
def test_keypoints_that_cannot_be_placed_reject_the_annotation(edit, match):
    result = copy.deepcopy(exported_task()["predictions"][0]["result"])
    edit(next(r for r in result if r["id"] == "pr-1:nose"))
    res = do_import(as_export(result))
    assert res["human_labels"] == [] and len(res["rejects"]) == 1
    assert match in res["rejects"][0]["reason"]


def test_a_point_inside_two_person_boxes_is_ambiguous():
    result = copy.deepcopy(exported_task()["predictions"][0]["result"])
    second = copy.deepcopy(result[0])
    second["id"] = "other"
    result.append(second)  # a second person box at the same place
    nose = next(r for r in result if r["id"] == "pr-1:nose")
    nose["id"] = "random"
    (rej,) = do_import(as_export(result))["rejects"]
    assert "lies in 2 boxes: ambiguous" in rej["reason"]
