"""Edge formats: geometry conversions, COCO JSON read by pycocotools, YOLO text and data.yaml."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from labelloop.formats.coco.reader import read_coco_annotations
from labelloop.formats.coco.writer import build_coco, dumps_coco
from labelloop.formats.yolo.writer import data_yaml, parse_yolo_lines, yolo_lines
from labelloop.geometry import boxes as geometry
from labelloop.geometry.masks import decode_rle, encode_rle

CATS = ["coin", "scratch", "dent"]
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


# -- geometry conversions -------------------------------------------------------------------


def test_xyxy_xywh_both_ways():
    assert geometry.xyxy_to_xywh([20, 15, 365, 512]) == [20.0, 15.0, 345.0, 497.0]
    assert geometry.xywh_to_xyxy([20, 15, 345, 497]) == [20.0, 15.0, 365.0, 512.0]


def test_yolo_both_ways():
    assert geometry.xyxy_to_yolo([20, 15, 365, 512], 512, 512) == [
        192.5 / 512,
        263.5 / 512,
        345 / 512,
        497 / 512,
    ]
    assert geometry.xyxy_to_yolo([100, 50, 300, 150], 400, 200) == [0.5, 0.5, 0.5, 0.5]
    assert geometry.yolo_to_xyxy([0.5, 0.5, 0.5, 0.5], 400, 200) == [100.0, 50.0, 300.0, 150.0]


def test_label_studio_percent_both_ways():
    # numbers from a real Label Studio 1.23.2 export of this box on a 512x512 image
    ls = {"x": 3.90625, "y": 2.9296875, "width": 67.3828125, "height": 97.0703125, "rotation": 0}
    assert geometry.xyxy_to_ls([20, 15, 365, 512], 512, 512) == ls
    assert geometry.ls_to_xyxy(ls, 512, 512) == [20.0, 15.0, 365.0, 512.0]


# -- COCO -----------------------------------------------------------------------------------


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)


def _dataset():
    disk = _disk(240, 320, 100, 120, 40)
    ring = disk - _disk(240, 320, 100, 120, 15)
    images = [  # deliberately not in sha order
        {"image_id": SHA_B, "file_name": "images/train/bb.jpg", "width": 320, "height": 240, "source_path": "b/ü.jpg"},
        {"image_id": SHA_A, "file_name": "images/train/aa.jpg", "width": 320, "height": 240, "source_path": "a.jpg"},
        {"image_id": SHA_C, "file_name": "images/val/cc.jpg", "width": 64, "height": 48, "source_path": "c.jpg"},
    ]
    labels = [
        {"label_id": "l2", "image_id": SHA_A, "category": "scratch", "bbox": [10.5, 20.25, 60.5, 45.75],
         "mask": None, "score": None, "origin": "human"},
        {"label_id": "l1", "image_id": SHA_A, "category": "coin", "bbox": [80.0, 60.0, 161.0, 141.0],
         "mask": encode_rle(disk), "score": 0.93, "origin": "model"},
        {"label_id": "l3", "image_id": SHA_B, "category": "coin", "bbox": [80.0, 60.0, 161.0, 141.0],
         "mask": encode_rle(ring), "score": None, "origin": "human"},
        {"label_id": "l4", "image_id": SHA_B, "category": "dent", "bbox": [0.0, 0.0, 320.0, 240.0],
         "mask": None, "score": 0.5, "origin": "model"},
    ]  # SHA_C: a negative image
    return images, labels, {"disk": disk, "ring": ring}


def _write(tmp_path, obj, name="coco.json"):
    path = tmp_path / name
    path.write_bytes(dumps_coco(obj))
    return path


def test_build_coco_structure():
    images, labels, _ = _dataset()
    coco = build_coco(images, labels, CATS)
    assert coco["licenses"] == [] and "date_created" not in coco["info"]
    assert coco["categories"] == [
        {"id": 1, "name": "coin", "supercategory": "object"},
        {"id": 2, "name": "scratch", "supercategory": "object"},
        {"id": 3, "name": "dent", "supercategory": "object"},
    ]
    assert [(i["id"], i["sha256"]) for i in coco["images"]] == [(1, SHA_A), (2, SHA_B), (3, SHA_C)]
    assert coco["images"][1]["source_path"] == "b/ü.jpg" and coco["images"][1]["file_name"] == "images/train/bb.jpg"
    anns = coco["annotations"]
    order = [(a["id"], a["image_id"], a["label_id"]) for a in anns]
    assert order == [(1, 1, "l1"), (2, 1, "l2"), (3, 2, "l3"), (4, 2, "l4")]
    assert anns[1]["bbox"] == [10.5, 20.25, 50.0, 25.5] and anns[1]["area"] == 50.0 * 25.5
    assert anns[1]["segmentation"] == [] and "score" not in anns[1]
    assert anns[0]["score"] == 0.93 and anns[0]["origin"] == "model" and anns[3]["score"] == 0.5
    assert isinstance(anns[0]["segmentation"], list)  # disk: polygons
    assert isinstance(anns[2]["segmentation"], dict)  # ring: RLE keeps the hole
    assert anns[0]["area"] == float(_dataset()[2]["disk"].sum())
    assert all(a["iscrowd"] == 0 for a in anns)


def test_pycocotools_reads_the_release(tmp_path):
    images, labels, raw = _dataset()
    path = _write(tmp_path, build_coco(images, labels, CATS))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    assert sorted(gt.getImgIds()) == [1, 2, 3]
    assert len(gt.getAnnIds()) == 4
    assert gt.getAnnIds(imgIds=[3]) == []  # the negative image
    assert len(gt.getAnnIds(imgIds=[1])) == 2 and gt.getCatIds(catNms=["dent"]) == [3]
    by_label = {lab["label_id"]: lab for lab in labels}
    for ann in gt.loadAnns(gt.getAnnIds()):
        want = geometry.xyxy_to_xywh(by_label[ann["label_id"]]["bbox"])
        np.testing.assert_allclose(ann["bbox"], want, atol=1e-6)
    for ann_id, original in ((1, raw["disk"]), (3, raw["ring"])):
        got = gt.annToMask(gt.loadAnns([ann_id])[0]).astype(bool)
        iou = (got & original.astype(bool)).sum() / (got | original.astype(bool)).sum()
        assert iou >= 0.95


def test_cocoeval_bbox_perfect_detections_score_ap_1(tmp_path):
    images, labels, _ = _dataset()
    path = _write(tmp_path, build_coco(images, labels, CATS))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dets = [
            {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt.loadAnns(gt.getAnnIds())
        ]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert ev.stats[1] == pytest.approx(1.0)  # AP@.5


def test_dumps_is_deterministic():
    images, labels, _ = _dataset()
    first = dumps_coco(build_coco(images, labels, CATS))
    second = dumps_coco(build_coco(list(reversed(images)), list(reversed(labels)), CATS))
    assert first == second
    assert first.endswith(b"\n") and "ü".encode() in first
    assert json.loads(first) == build_coco(images, labels, CATS)


def test_unknown_category_raises():
    images, labels, _ = _dataset()
    labels[0]["category"] = "rust"
    with pytest.raises(ValueError, match=r"'l2'.*'rust'"):
        build_coco(images, labels, CATS)


def test_bad_inputs_raise():
    images, labels, _ = _dataset()
    with pytest.raises(ValueError, match="not in the images"):
        build_coco(images[:1], labels, CATS)
    bad = [dict(labels[0], bbox=[10, 10, 5, 20])]
    with pytest.raises(ValueError, match="'l2'.*area"):
        build_coco(images, bad, CATS)
    bad = [dict(labels[1], mask=encode_rle(np.ones((10, 10))))]
    with pytest.raises(ValueError, match="'l1'.*10x10"):
        build_coco(images, bad, CATS)


def test_read_coco_round_trip(tmp_path):
    images, labels, raw = _dataset()
    coco = build_coco(images, labels, CATS)
    path = _write(tmp_path, coco)
    imgs, labs, cats = read_coco_annotations(path)
    assert cats == CATS
    assert [i["image_id"] for i in imgs] == [SHA_A, SHA_B, SHA_C]
    assert imgs[0] == {"image_id": SHA_A, "file_name": "images/train/aa.jpg", "width": 320, "height": 240,
                       "source_path": "a.jpg"}
    by_id = {lab["label_id"]: lab for lab in labs}
    for lab in labels:
        got = by_id[lab["label_id"]]
        assert (got["image_id"], got["category"], got["origin"]) == (lab["image_id"], lab["category"], lab["origin"])
        np.testing.assert_allclose(got["bbox"], lab["bbox"], atol=1e-9)
        assert got["score"] == (lab["score"] if lab["origin"] == "model" else None)
        if lab["mask"] is None:
            assert got["mask"] is None
        else:
            np.testing.assert_array_equal(decode_rle(got["mask"]), decode_rle(lab["mask"]))
    # export -> import -> export gives the same bytes
    assert dumps_coco(build_coco(imgs, labs, cats)) == path.read_bytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.pop("annotations"), "lacks"),
        (lambda c: c["annotations"][0].pop("bbox"), "lacks"),
        (lambda c: c["annotations"][0].update(category_id=99), "unknown category id 99"),
        (lambda c: c["annotations"][0].update(image_id=99), "unknown image id 99"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "bad bbox"),
        (lambda c: c["annotations"][0].update(bbox=[10, 10, -5, 4]), "bad bbox"),
        (lambda c: c["annotations"][0].update(bbox=[300, 10, 50, 4]), "bad bbox"),
        (lambda c: c["annotations"][0].update(segmentation={"size": [2, 2], "counts": "zz"}), "segmentation"),
    ],
)
def test_read_coco_rejects_bad_files(tmp_path, mutate, message):
    images, labels, _ = _dataset()
    coco = build_coco(images, labels, CATS)
    mutate(coco)
    path = _write(tmp_path, coco, "broken.json")
    with pytest.raises(ValueError, match=message) as err:
        read_coco_annotations(path)
    assert "broken.json" in str(err.value)


def test_read_coco_rejects_non_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="x.json"):
        read_coco_annotations(path)


# -- YOLO -----------------------------------------------------------------------------------


def test_yolo_lines_round_trip():
    images, labels, _ = _dataset()
    a_labels = [lab for lab in labels if lab["image_id"] == SHA_A]
    text = yolo_lines(a_labels, 320, 240, CATS)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 2
    assert lines[0].startswith("0 ") and lines[1].startswith("1 ")  # l1 (coin) before l2 (scratch)
    assert lines[0] == "0 0.3765625 0.4187500 0.253125 0.337500"  # centre at 7 decimals: cx - w/2 is the edge exactly
    back = parse_yolo_lines(text, 320, 240, CATS)
    for got, want in zip(back, sorted(a_labels, key=lambda d: d["label_id"])):
        assert got["category"] == want["category"]
        np.testing.assert_allclose(got["bbox"], want["bbox"], atol=0.01)


def test_yolo_negative_image_and_errors():
    assert yolo_lines([], 64, 48, CATS) == ""
    assert parse_yolo_lines("", 64, 48, CATS) == []
    with pytest.raises(ValueError, match="'x'.*'rust'"):
        yolo_lines([{"label_id": "x", "category": "rust", "bbox": [0, 0, 1, 1]}], 64, 48, CATS)
    with pytest.raises(ValueError, match="outside"):
        yolo_lines([{"label_id": "x", "category": "coin", "bbox": [0, 0, 65, 1]}], 64, 48, CATS)
    with pytest.raises(ValueError, match="line 2"):
        parse_yolo_lines("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n", 64, 48, CATS)
    with pytest.raises(ValueError, match="line 1"):
        parse_yolo_lines("0 0.1 0.1 0.2 0.2 0.3 0.3\n", 64, 48, CATS)


def test_data_yaml():
    text = data_yaml(CATS, ["val", "train"])
    doc = yaml.safe_load(text)
    assert doc == {"train": "images/train", "val": "images/val", "nc": 3, "names": {0: "coin", 1: "scratch", 2: "dent"}}
    assert "path" not in doc and "test" not in doc
    assert text == data_yaml(CATS, ["train", "val"])
    assert yaml.safe_load(data_yaml(["yes", "a: b"], ["train", "val", "test"]))["names"] == {0: "yes", 1: "a: b"}
    with pytest.raises(ValueError):
        data_yaml(CATS, ["training"])


@pytest.mark.parametrize("box,size", [
    ([333.3333, 10.0, 640.0, 479.99], (640, 480)),   # touching the right edge
    ([0.0, 0.0, 212.7, 99.9], (641, 333)),             # touching the left and top edges
    ([1.0 / 3, 2.0 / 3, 1279.9999, 719.5], (1280, 720)),
])
def test_yolo_box_edges_stay_inside_the_image_exactly(box, size):
    # cx - w/2 and cx + w/2, in decimal arithmetic, are exactly the box's normalized edges
    # rounded to millionths, never below 0 or above 1 (Ultralytics clips or refuses those)
    from decimal import Decimal

    w, h = size
    line = yolo_lines([{"label_id": "a", "category": CATS[0], "bbox": box}], w, h, CATS).split()
    cx, cy, bw, bh = (Decimal(v) for v in line[1:])
    for c, s, lo, hi, n in ((cx, bw, box[0], box[2], w), (cy, bh, box[1], box[3], h)):
        left, right = c - s / 2, c + s / 2
        assert Decimal(0) <= left and right <= Decimal(1)
        assert left == Decimal(round(lo / n * 1_000_000)) / 1_000_000
        assert right == Decimal(round(hi / n * 1_000_000)) / 1_000_000
