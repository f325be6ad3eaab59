"""COCO polygons per part, RLE with holes, crowd regions, keypoints and stable ids; YOLO detect,
segment and pose layouts as Ultralytics reads them; the id registry."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from labelloop.formats.coco.reader import read_coco_annotations
from labelloop.formats.coco.writer import build_coco, dumps_coco, uncompressed_rle
from labelloop.formats.yolo.writer import (
    check_label_text,
    data_yaml,
    flip_index,
    join_parts,
    label_text,
    object_polygon,
)
from labelloop.geometry.masks import encode_rle
from labelloop.release.ids import CocoIds, identity
from labelloop.review.resolve import label_id

H, W = 120, 160
CATS = ["person", "blob"]
KP = {"person": {"keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3], [2, 3]]}}
SHA = "f" * 64


def _disk(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)


def _labels():
    two_parts = np.zeros((H, W), np.uint8)
    two_parts[10:30, 10:40] = 1
    two_parts[60:90, 100:150] = 1
    ring = _disk(60, 60, 25) - _disk(60, 60, 10)
    crowd = np.zeros((H, W), np.uint8)
    crowd[100:115, 5:60] = 1
    return [
        {"label_id": "a", "image_id": SHA, "category": "blob", "bbox": [10, 10, 150, 90], "mask": encode_rle(two_parts),
         "origin": "human"},
        {"label_id": "b", "image_id": SHA, "category": "blob", "bbox": [35, 35, 86, 86], "mask": encode_rle(ring),
         "origin": "human"},
        {"label_id": "c", "image_id": SHA, "category": "person", "bbox": [5, 100, 60, 115], "mask": encode_rle(crowd),
         "iscrowd": True, "origin": "human"},
        {"label_id": "d", "image_id": SHA, "category": "person", "bbox": [40, 20, 100, 110], "mask": None,
         "keypoints": [70, 30, 2, 60, 25, 1, 0, 0, 0], "origin": "human"},
        {"label_id": "e", "image_id": SHA, "category": "person", "bbox": [120, 5, 150, 40], "mask": None,
         "origin": "model", "score": 0.9},
    ], {"two_parts": two_parts, "ring": ring, "crowd": crowd}


IMAGES = [{"image_id": SHA, "file_name": "images/train/ff.png", "width": W, "height": H}]


def _load(tmp_path, obj):
    path = tmp_path / "coco.json"
    path.write_bytes(dumps_coco(obj))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path)), path


def test_coco_segmentation_kinds_and_keypoints(tmp_path):
    labels, masks = _labels()
    obj = build_coco(IMAGES, labels, CATS, keypoints=KP)
    gt, path = _load(tmp_path, obj)
    anns = {a["label_id"]: a for a in gt.loadAnns(gt.getAnnIds())}
    # one object in two parts: two polygons, iscrowd 0, rasterizing back to the exact mask
    a = anns["a"]
    assert a["iscrowd"] == 0 and isinstance(a["segmentation"], list) and len(a["segmentation"]) == 2
    np.testing.assert_array_equal(gt.annToMask(a), masks["two_parts"])
    # one object with a hole: compressed RLE, still iscrowd 0
    b = anns["b"]
    assert b["iscrowd"] == 0 and isinstance(b["segmentation"]["counts"], str)
    np.testing.assert_array_equal(gt.annToMask(b), masks["ring"])
    assert b["area"] == float(masks["ring"].sum())
    # a crowd region: iscrowd 1 with COCO's uncompressed RLE
    c = anns["c"]
    assert c["iscrowd"] == 1 and isinstance(c["segmentation"]["counts"], list)
    np.testing.assert_array_equal(gt.annToMask(c), masks["crowd"])
    assert c["area"] == float(masks["crowd"].sum()) == 15 * 55
    # keypoints: 3 per named point, v=0 written as 0 0 0, num_keypoints counts v > 0
    d = anns["d"]
    assert d["keypoints"] == [70.0, 30.0, 2.0, 60.0, 25.0, 1.0, 0.0, 0.0, 0.0] and d["num_keypoints"] == 2
    assert anns["e"]["keypoints"] == [0.0] * 9 and anns["e"]["num_keypoints"] == 0  # a person without points
    assert "keypoints" not in a  # blob has no keypoints
    person = gt.loadCats(gt.getCatIds(catNms=["person"]))[0]
    assert person["keypoints"] == ["nose", "left_eye", "right_eye"] and person["skeleton"] == [[1, 2], [1, 3], [2, 3]]
    assert "keypoints" not in gt.loadCats(gt.getCatIds(catNms=["blob"]))[0]
    # read back: keypoints and crowd survive, and export -> import -> export is byte-identical
    _, labs, cats = read_coco_annotations(path)
    back = {lab["label_id"]: lab for lab in labs}
    assert back["c"]["iscrowd"] == 1 and back["d"]["keypoints"] == d["keypoints"]
    assert dumps_coco(build_coco(IMAGES, labs, cats, keypoints=KP)) == path.read_bytes()


def test_crowd_region_without_mask_is_its_box():
    lab = {"label_id": "x", "image_id": SHA, "category": "blob", "bbox": [10, 20, 30, 25], "iscrowd": True}
    ann = build_coco(IMAGES, [lab], CATS)["annotations"][0]
    m = mask_utils.decode(mask_utils.frPyObjects(ann["segmentation"], H, W))
    assert ann["iscrowd"] == 1 and m.sum() == ann["area"] == 20 * 5
    assert m[20:25, 10:30].all()


def test_uncompressed_rle_matches_pycocotools():
    m = np.zeros((4, 3), np.uint8)
    m[0, 0] = m[1:3, 1] = 1
    rle = uncompressed_rle(m)
    assert rle == {"size": [4, 3], "counts": [0, 1, 4, 2, 5]}
    np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 4, 3)), m)


@pytest.mark.parametrize("kp, message", [
    ([70, 30, 2], "3 keypoint numbers; category 'person' needs 9"),
    ([70, 30, 3, 0, 0, 0, 0, 0, 0], "visibility 3.0"),
    ([900, 30, 2, 0, 0, 0, 0, 0, 0], "outside the 160x120 image"),
])
def test_bad_keypoints_name_the_label(kp, message):
    lab = {"label_id": "bad-kp", "image_id": SHA, "category": "person", "bbox": [1, 1, 50, 50], "keypoints": kp}
    with pytest.raises(ValueError, match="'bad-kp'") as err:
        build_coco(IMAGES, [lab], CATS, keypoints=KP)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="defines none"):
        build_coco(IMAGES, [dict(lab, category="blob")], CATS, keypoints=KP)


def test_stable_ids_are_used_and_checked():
    labels, _ = _labels()
    obj = build_coco(IMAGES, labels, CATS, keypoints=KP, image_ids={SHA: 41},
                     annotation_ids={"a": 7, "b": 3, "c": 12, "d": 5, "e": 6})
    assert obj["images"][0]["id"] == 41
    assert [(a["label_id"], a["id"], a["image_id"]) for a in obj["annotations"]] == [
        ("a", 7, 41), ("b", 3, 41), ("c", 12, 41), ("d", 5, 41), ("e", 6, 41)]
    with pytest.raises(ValueError, match="'e' has no COCO annotation id"):
        build_coco(IMAGES, labels, CATS, keypoints=KP, annotation_ids={"a": 1, "b": 2, "c": 3, "d": 4})
    with pytest.raises(ValueError, match="repeated"):
        build_coco(IMAGES, labels, CATS, keypoints=KP, annotation_ids={"a": 1, "b": 2, "c": 3, "d": 4, "e": 4})


def test_id_registry_keeps_ids_and_never_reuses_them(tmp_path):
    path = tmp_path / "coco_ids.parquet"
    ids = CocoIds(path)
    img = ids.image_ids(["b" * 64, "a" * 64])
    assert img == {"b" * 64: 2, "a" * 64: 1}
    model = {"label_id": label_id("model", "pr-1"), "image_id": "a" * 64, "origin": "model", "prediction_id": "pr-1",
             "action": "auto_accepted"}
    other = {"label_id": "lb-other", "image_id": "b" * 64, "origin": "model", "prediction_id": "pr-2",
             "action": "auto_accepted"}
    first = ids.annotation_ids([model, other], img)
    assert first == {model["label_id"]: 1, "lb-other": 2}
    ids.save()
    # next release: the reviewer corrected the model box (new label_id, same identity), an added box
    ids2 = CocoIds(path)
    corrected = {"label_id": "lb-human-1", "image_id": "a" * 64, "origin": "human", "prediction_id": "pr-1",
                 "action": "corrected"}
    added = {"label_id": "lb-human-2", "image_id": "a" * 64, "origin": "human", "prediction_id": None,
             "action": "added"}
    assert identity(corrected) == model["label_id"] and identity(added) == "lb-human-2"
    second = ids2.annotation_ids([corrected, added], ids2.image_ids(["a" * 64]))
    assert second == {"lb-human-1": 1, "lb-human-2": 3}  # 2 stays retired with lb-other
    # two labels claiming one identity: the second gets its own id
    twin = dict(corrected, label_id="lb-human-3")
    third = ids2.annotation_ids([corrected, twin], {"a" * 64: 1})
    assert third == {"lb-human-1": 1, "lb-human-3": 4}


# ---- YOLO ---------------------------------------------------------------------------------------
def _rasterize(flat_norm: list[float]) -> np.ndarray:
    pts = (np.asarray(flat_norm).reshape(-1, 2) * [W, H]).ravel().tolist()
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([pts], H, W)))


def test_segment_layout_polygons():
    labels, masks = _labels()
    text = label_text("segment", labels, W, H, CATS)
    lines = text.splitlines()
    assert len(lines) == 4  # the crowd region is left out
    by_class = [line.split()[0] for line in lines]
    assert by_class == ["1", "1", "0", "0"]  # a, b (blob), d, e (person); sorted by label_id
    assert check_label_text(text, "segment", 2) == []
    # two parts joined by zero-width bridges: one polygon that rasterizes to the two parts
    # (pixel-edge outlines at 6 decimals rasterize back exactly)
    np.testing.assert_array_equal(_rasterize([float(v) for v in lines[0].split()[1:]]), masks["two_parts"])
    # the ring: outer outline only (YOLO polygons have no holes)
    np.testing.assert_array_equal(_rasterize([float(v) for v in lines[1].split()[1:]]), _disk(60, 60, 25))
    # a box without mask: its four corners, clockwise from the top-left
    assert lines[2].split()[1:] == [f"{v:.6f}" for v in (40 / W, 20 / H, 100 / W, 20 / H, 100 / W, 110 / H, 40 / W, 110 / H)]


def test_join_parts_walks_every_part_and_returns():
    a = [0, 0, 10, 0, 10, 10, 0, 10]
    b = [20, 0, 25, 0, 25, 5, 20, 5]
    joined = np.asarray(join_parts([b, a])).reshape(-1, 2).tolist()
    assert joined[0] in ([10, 0], [10, 10]) and [20, 0] in joined and [25, 5] in joined
    assert object_polygon({"bbox": [1, 2, 3, 4], "mask": None}) == [1, 2, 3, 2, 3, 4, 1, 4]


def test_pose_layout_and_data_yaml():
    labels, _ = _labels()
    text = label_text("pose", labels, W, H, CATS, kpt_count=3)
    lines = text.splitlines()
    assert len(lines) == 4
    d = lines[2].split()
    assert d[0] == "0" and len(d) == 1 + 4 + 9
    assert [float(v) for v in d[5:]] == pytest.approx([70 / W, 30 / H, 2, 60 / W, 25 / H, 1, 0, 0, 0], abs=1e-6)
    assert lines[0].split()[5:] == ["0.000000"] * 9  # a blob: no keypoints
    assert check_label_text(text, "pose", 2, 3) == []
    assert flip_index(KP["person"]["keypoints"]) == [0, 2, 1]
    assert flip_index(["a", "b"]) is None
    doc = yaml.safe_load(data_yaml(CATS, ["train", "val"], kpt_shape=[3, 3], flip_idx=[0, 2, 1]))
    assert doc == {"train": "images/train", "val": "images/val", "kpt_shape": [3, 3], "flip_idx": [0, 2, 1],
                   "nc": 2, "names": {0: "person", 1: "blob"}}
    with pytest.raises(ValueError, match="permutation"):
        data_yaml(CATS, ["train"], kpt_shape=[3, 3], flip_idx=[0, 1])
    with pytest.raises(ValueError, match="'d' has 3 keypoint numbers"):
        label_text("pose", [dict(labels[3], keypoints=[1, 2, 2])], W, H, CATS, kpt_count=3)


def test_detect_layout_leaves_crowds_out_and_negatives_empty():
    labels, _ = _labels()
    text = label_text("detect", labels, W, H, CATS)
    assert len(text.splitlines()) == 4 and check_label_text(text, "detect", 2) == []
    assert label_text("detect", [], W, H, CATS) == ""
    with pytest.raises(ValueError, match="unknown YOLO task"):
        label_text("obb", labels, W, H, CATS)


@pytest.mark.parametrize("task, text, problem", [
    ("detect", "0 0.5 0.5 0.2\n", "needs 5 fields"),
    ("detect", "2 0.5 0.5 0.2 0.2\n", "class index 2 outside 0..1"),
    ("detect", "0 0.5 1.2 0.2 0.2\n", "outside [0, 1]"),
    ("detect", "0 0.5 nan 0.2 0.2\n", "non-finite"),
    ("detect", "zero 0.5 0.5 0.2 0.2\n", "not numbers"),
    ("segment", "0 0.1 0.1 0.2 0.2\n", "even number >= 6"),
    ("pose", "0 0.5 0.5 0.2 0.2 0.1 0.1 2 0.2 0.2 5 0 0 0\n", "visibility"),
])
def test_label_checks_name_the_line(task, text, problem):
    got = check_label_text("\n" + text, task, 2, 3)
    assert len(got) == 1 and got[0].startswith("line 2: ") and problem in got[0]
