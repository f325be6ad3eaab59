"""Masks to Label Studio as brush regions (label-studio-sdk's brush RLE codec) and back, on a real
mask (scikit-image's horse silhouette). The live-server round trip is in test_labelstudio_live.py."""

from __future__ import annotations

import copy
import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import skimage.data

from labelloop.formats.labelstudio import build_import_tasks, label_config_xml, parse_export
from labelloop.formats.labelstudio.brush import brush_rle_to_mask, mask_to_brush_rle
from labelloop.geometry.masks import decode_rle, encode_rle, mask_iou, rle_bbox_xyxy
from labelloop.review.importer import import_review

CATS = ["person", "face", "cat"]
HORSE = ~skimage.data.horse()  # (328, 400), True = the horse
H, W = HORSE.shape
SRC = "label-studio/project-9"


def image(name="horse.png"):
    return {"image_id": hashlib.sha256(name.encode()).hexdigest(), "uri": f"inbox/b1/{name}", "source_path": name,
            "width": W, "height": H, "status": "ok", "duplicate_of": None}


def test_our_mask_to_brush_rle_and_back_is_the_same_mask():
    from label_studio_sdk.converter.brush import decode_rle as ls_decode

    ours = encode_rle(HORSE)
    rle = mask_to_brush_rle(ours)
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in rle) and len(rle) < H * W / 10
    rgba = np.asarray(ls_decode(rle)).reshape(H, W, 4)  # as Label Studio's editor reads it
    assert set(np.unique(rgba[:, :, 3])) == {0, 255} and np.array_equal(rgba[:, :, 3] == 255, HORSE)
    back = brush_rle_to_mask(rle, W, H)
    assert mask_iou(back, ours) >= 0.99
    assert np.array_equal(decode_rle(back).astype(bool), HORSE)  # in fact lossless


@pytest.mark.parametrize("rle, match", [
    ("abc", "list of at least 6 integers"),
    ([0, 1, 2, 300, 4, 5, 6], "integers 0-255"),
    ("other-size", "size mismatch"),
    ("truncated", "ends early"),
])
def test_bad_brush_rle_is_a_clear_error(rle, match):
    good = mask_to_brush_rle(encode_rle(HORSE))
    if rle == "other-size":
        rle = mask_to_brush_rle(encode_rle(HORSE[:100]))
    elif rle == "truncated":
        rle = good[: len(good) // 3]
    with pytest.raises(ValueError, match=match):
        brush_rle_to_mask(rle, W, H)


def test_label_config_has_brush_labels_of_the_mask_categories():
    root = ET.fromstring(label_config_xml(CATS, masks=["cat", "person"]))
    (brush,) = root.findall("BrushLabels")
    assert (brush.get("name"), brush.get("toName")) == ("brush", "image")
    assert [lab.get("value") for lab in brush.findall("Label")] == ["person", "cat"]  # config order
    assert root.find("RectangleLabels") is not None  # boxes stay drawable for every category
    assert ET.fromstring(label_config_xml(CATS)).find("BrushLabels") is None
    with pytest.raises(ValueError, match="mask categories"):
        label_config_xml(CATS, masks=["dog"])


@pytest.fixture(scope="module")
def sent():
    img = image()
    preds = [
        {"prediction_id": "pr-horse", "image_id": img["image_id"], "category": "cat", "bbox": [10.0, 5.0, 395.0, 320.0],
         "score": 0.9, "mask": encode_rle(HORSE)},
        {"prediction_id": "pr-face", "image_id": img["image_id"], "category": "face", "bbox": [50.0, 40.0, 90.0, 80.0],
         "score": 0.6, "mask": encode_rle(HORSE)},  # face has no masks in the config: a box
    ]
    tasks, exported = build_import_tasks([img], preds, model_version="m1", batch="b1", masks=["cat", "person"])
    return img, preds, tasks, exported


def test_tasks_carry_masks_of_mask_categories_as_brush_regions(sent):
    img, preds, tasks, exported = sent
    (task,) = tasks
    by_id = {r["id"]: r for r in task["predictions"][0]["result"]}
    horse, face = by_id["pr-horse"], by_id["pr-face"]
    assert (horse["from_name"], horse["to_name"], horse["type"]) == ("brush", "image", "brushlabels")
    assert horse["value"]["format"] == "rle" and horse["value"]["brushlabels"] == ["cat"]
    assert (horse["original_width"], horse["original_height"], horse["score"]) == (W, H, 0.9)
    assert np.array_equal(decode_rle(brush_rle_to_mask(horse["value"]["rle"], W, H)).astype(bool), HORSE)
    assert face["type"] == "rectanglelabels" and face["value"]["rectanglelabels"] == ["face"]
    rows = {r["prediction_id"]: r for r in exported}
    assert rows["pr-horse"]["mask"] == preds[0]["mask"] and rows["pr-face"]["mask"] is None
    json.dumps(tasks)  # plain JSON


def _export(task: dict, result: list[dict], ann_id: int = 5) -> list[dict]:
    """A Label Studio JSON export of the task with one annotation (as the 1.23.2 fixture)."""
    return [{"id": 11, "project": 9, "data": task["data"], "annotations": [{
        "id": ann_id, "completed_by": 3, "result": result, "was_cancelled": False,
        "created_at": "2026-11-29T10:00:00.000000Z", "updated_at": "2026-11-29T10:05:00.000000Z"}]}]


def _import(export, sent):
    img, _, _, exported = sent
    return import_review(parse_export(export), file_name="e.json", import_sha256="0" * 64, source=SRC, images=[img],
                         exported=exported, known_review_keys=set(), categories=CATS)


def test_kept_mask_is_accepted_with_the_mask_and_its_box(sent):
    img, preds, tasks, _ = sent
    res = _import(_export(tasks[0], copy.deepcopy(tasks[0]["predictions"][0]["result"])), sent)
    assert res["rejects"] == []
    rows = {r["region_id"]: r for r in res["human_labels"]}
    horse = rows["pr-horse"]
    assert (horse["category"], horse["action"], horse["source_prediction_id"]) == ("cat", "accepted", "pr-horse")
    assert mask_iou(horse["mask"], preds[0]["mask"]) == 1.0
    assert horse["bbox"] == pytest.approx(rle_bbox_xyxy(preds[0]["mask"]))  # the mask's box, not the detector's
    assert horse["annotator"] == "ls-user-3"
    assert rows["pr-face"]["action"] == "accepted" and rows["pr-face"]["mask"] is None


def test_edited_relabeled_added_and_deleted_masks(sent):
    img, preds, tasks, _ = sent
    result = copy.deepcopy(tasks[0]["predictions"][0]["result"])
    horse = next(r for r in result if r["id"] == "pr-horse")
    edited = HORSE.copy()
    edited[:, 200:] = False  # the reviewer erased the horse's right half
    horse["value"].update(rle=mask_to_brush_rle(encode_rle(edited)), brushlabels=["person"])
    blob = np.zeros_like(HORSE)
    blob[20:60, 300:380] = True
    added = {"id": "new1", "from_name": "brush", "to_name": "image", "type": "brushlabels", "original_width": W,
             "original_height": H, "value": {"format": "rle", "rle": mask_to_brush_rle(encode_rle(blob)),
                                             "brushlabels": ["cat"]}}
    res = _import(_export(tasks[0], [horse, added]), sent)  # the face box deleted
    rows = {r["region_id"]: r for r in res["human_labels"]}
    got = rows["pr-horse"]
    assert (got["category"], got["action"]) == ("person", "corrected")
    assert np.array_equal(decode_rle(got["mask"]).astype(bool), edited)
    ys, xs = np.nonzero(edited)
    assert got["bbox"] == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    new = rows["new1"]
    assert (new["category"], new["action"], new["bbox"]) == ("cat", "added", pytest.approx([300, 20, 380, 60]))
    assert rows["pr-face"]["action"] == "deleted"


def _wide_word_rle(n=H * W * 4):
    """A brush RLE header with 16-bit words (one run of 65535): the SDK decoder overflows uint8."""
    bits = "".join(format(v, f"0{k}b") for v, k in ((n, 32), (15, 5), (15, 4), (15, 4), (15, 4), (15, 4),
                                                       (1, 1), (3, 2), (65535, 16), (65535, 16)))
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)] + [0] * 8


@pytest.mark.parametrize("mutate, match", [
    (lambda v: v.update(format="png"), "format 'png' is not 'rle'"),
    (lambda v: v.update(rle=_wide_word_rle()), "word size 16 bits"),
    (lambda v: v.update(rle=mask_to_brush_rle(encode_rle(HORSE[:, :200]))), "size mismatch"),
    (lambda v: v.update(rle=[1, 2, 3]), "at least 6 integers"),
    (lambda v: v.update(rle=mask_to_brush_rle(encode_rle(np.zeros_like(HORSE)))), "empty brush mask"),
    (lambda v: v.update(brushlabels=["dog"]), "unknown category 'dog'"),
])
def test_a_bad_brush_region_rejects_its_annotation_only(sent, mutate, match):
    img, _, tasks, _ = sent
    result = copy.deepcopy(tasks[0]["predictions"][0]["result"])
    mutate(next(r for r in result if r["id"] == "pr-horse")["value"])
    export = _export(tasks[0], result) + _export(tasks[0], copy.deepcopy(tasks[0]["predictions"][0]["result"]), 6)
    export = [{**export[0], "annotations": export[0]["annotations"] + export[1]["annotations"]}]
    res = _import(export, sent)
    (rej,) = res["rejects"]
    assert rej["item"] == "task 11 annotation 5" and "pr-horse" in rej["reason"] and match in rej["reason"]
    assert [r["tool_annotation_id"] for r in res["reviews"]] == ["6"]  # the good annotation imports
    assert {r["review_id"] for r in res["human_labels"]} == {res["reviews"][0]["review_id"]}


def test_a_registered_import_file_with_brush_regions_keeps_the_masks(sent):
    """register-export of an import file holding brush pre-annotations (as labelloop writes them)."""
    from labelloop.review.importer import register_import_tasks

    img, preds, tasks, _ = sent
    rows, rejects = register_import_tasks(copy.deepcopy(tasks), source=SRC, images=[img], file_name="tasks.json")
    assert rejects == []
    by_region = {r["region_id"]: r for r in rows}
    horse = by_region["pr-horse"]
    assert horse["category"] == "cat" and mask_iou(horse["mask"], preds[0]["mask"]) == 1.0
    assert horse["bbox"] == pytest.approx(rle_bbox_xyxy(preds[0]["mask"]))
    assert by_region["pr-face"]["mask"] is None
    bad = copy.deepcopy(tasks)
    bad[0]["predictions"][0]["result"][0]["value"]["rle"] = [0, 0, 0, 1, 2, 3, 4]
    rows, rejects = register_import_tasks(bad, source=SRC, images=[img], file_name="tasks.json")
    assert rows == [] and rejects[0]["item"] == "import task 0" and "size mismatch" in rejects[0]["reason"]


@pytest.mark.parametrize("key, bad", [("original_width", "abc"), ("original_height", [1]),
                                      ("original_width", float("nan"))])
def test_a_non_numeric_original_size_rejects_its_annotation_only(sent, key, bad):
    """Was: ValueError / TypeError out of the size check, so the whole export file was refused."""
    img, _, tasks, _ = sent
    result = copy.deepcopy(tasks[0]["predictions"][0]["result"])
    next(r for r in result if r["id"] == "pr-horse")[key] = bad
    export = _export(tasks[0], result) + _export(tasks[0], copy.deepcopy(tasks[0]["predictions"][0]["result"]), 6)
    export = [{**export[0], "annotations": export[0]["annotations"] + export[1]["annotations"]}]
    res = _import(export, sent)
    (rej,) = res["rejects"]
    assert rej["item"] == "task 11 annotation 5" and f"region pr-horse: {key}" in rej["reason"], rej
    assert [r["tool_annotation_id"] for r in res["reviews"]] == ["6"]


def _pred_score(pred, value):
    """The prediction's own score, read when its regions carry none."""
    for r in pred["result"]:
        r.pop("score", None)
    pred["score"] = value


@pytest.mark.parametrize("mutate, match", [
    (lambda r, p: r.update(score="high"), "score 'high' is not a number"),
    (lambda r, p: _pred_score(p, [1]), "score '[1]' is not a number"),
    (lambda r, p: r["value"].update(brushlabels="cat"), "must be a list of one label name"),
    (lambda r, p: r["value"].update(brushlabels=[["cat"]]), "must be a list of one label name"),
    (lambda r, p: r.update(original_width="wide"), "original_width 'wide' is not a number"),
])
def test_a_bad_registered_task_is_rejected_alone(sent, mutate, match):
    """register-export: one malformed task (score, labels, sizes) used to raise out of the whole
    registration (ValueError / TypeError / KeyError); now it is a reject and the others register."""
    from labelloop.review.importer import register_import_tasks

    img, _, tasks, _ = sent
    two = copy.deepcopy(tasks) + copy.deepcopy(tasks)
    pred = two[0]["predictions"][0]
    mutate(next(r for r in pred["result"] if r["id"] == "pr-horse"), pred)
    rows, rejects = register_import_tasks(two, source=SRC, images=[img], file_name="tasks.json")
    (rej,) = rejects
    assert rej["item"] == "import task 0" and match in rej["reason"], rej
    assert {r["region_id"] for r in rows} == {"pr-horse", "pr-face"}  # task 1 registers


@pytest.mark.parametrize("mutate, match", [
    (lambda ann, task: ann["result"][0].update(from_name=["brush"]), "from_name ['brush'] is not a control"),
    (lambda ann, task: task["data"].update(image=["x.png"]), "no image reference"),
    (lambda ann, task: task["data"].update(image_id=[1]), None),  # an image_id of the wrong type matches nothing
    (lambda ann, task: ann.update(prediction={"id": 1, "result": [dict(ann["result"][1], score="")]}), None),
])
def test_ill_typed_fields_reject_one_annotation_not_the_file(sent, mutate, match):
    """Was: TypeError / ValueError out of parse_export / import_review, so the whole file was refused."""
    img, _, tasks, _ = sent
    ok = _export(tasks[0], copy.deepcopy(tasks[0]["predictions"][0]["result"]), 6)
    bad = _export(tasks[0], copy.deepcopy(tasks[0]["predictions"][0]["result"]))
    bad[0]["id"], bad[0]["data"] = 12, dict(bad[0]["data"])
    mutate(bad[0]["annotations"][0], bad[0])
    res = _import(bad + ok, sent)
    if match is None:  # nothing wrong enough to reject: both import
        assert res["rejects"] == [] and len(res["reviews"]) == 2
    else:
        (rej,) = res["rejects"]
        assert rej["item"] == "task 12 annotation 5" and match in rej["reason"], rej
        assert [r["tool_annotation_id"] for r in res["reviews"]] == ["6"]


def test_a_registered_task_with_ill_typed_fields_is_rejected_alone(sent):
    from labelloop.review.importer import register_import_tasks

    img, _, tasks, _ = sent
    three = copy.deepcopy(tasks) * 3
    three[0] = dict(three[0], predictions=0.5)
    three[1] = dict(three[1], data=dict(three[1]["data"], image=["a.png"], image_id=["x"]))
    rows, rejects = register_import_tasks(three, source=SRC, images=[img], file_name="tasks.json")
    assert [(r["item"], r["reason"]) for r in rejects] == [
        ("import task 0", "'predictions' is not a list"), ("import task 1", "image reference ['a.png'] is not a string")]
    assert {r["region_id"] for r in rows} == {"pr-horse", "pr-face"}
