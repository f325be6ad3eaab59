"""COCO JSON imported as reviewed labels (labelloop.formats.coco.reader): the round trip through the COCO
file labelloop releases write (labelloop.formats.coco.writer.build_coco), RLE and polygon masks, keypoints,
image matching, identity and bad files."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage
import skimage.data
from PIL import Image
from pycocotools import mask as mask_utils

from labelloop.formats.coco.reader import parse_coco_review
from labelloop.formats.coco.writer import build_coco
from labelloop.formats.labelstudio import ExportFormatError
from labelloop.geometry.keypoints import COCO_PERSON_KEYPOINTS
from labelloop.geometry.masks import encode_rle, mask_iou
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_review
from labelloop.review.store import ReviewStore, make_import_id

SK = Path(skimage.__file__).parent / "data"
CATS = ["person", "face", "cat"]
KP = {"person": list(COCO_PERSON_KEYPOINTS)}
T0 = "2026-11-29T00:00:00+00:00"


def image_row(name: str) -> dict:
    p = SK / name
    with Image.open(p) as im:
        w, h = im.size
    return {"image_id": hashlib.sha256(p.read_bytes()).hexdigest(), "uri": f"inbox/b1/{name}", "source_path": name,
            "width": w, "height": h, "status": "ok", "duplicate_of": None}


@pytest.fixture(scope="module")
def images():
    return [image_row(n) for n in ("astronaut.png", "horse.png", "coffee.png")]


@pytest.fixture(scope="module")
def labels(images):
    astro, horse, _ = images
    ring = np.zeros((328, 400), bool)
    ring[50:250, 50:350] = True
    ring[100:200, 120:280] = False  # a hole: COCO gets an RLE segmentation
    from skimage.draw import ellipse

    blob = np.zeros((512, 512), bool)
    blob[ellipse(300, 250, 60, 90, shape=blob.shape)] = True  # no hole: COCO gets polygons
    kps = [0.0] * 51
    kps[0:3] = [215.25, 120.5, 2]  # nose, visible
    kps[3:6] = [230.0, 101.75, 1]  # left_eye, occluded
    return [
        {"label_id": "lb-person", "image_id": astro["image_id"], "category": "person",
         "bbox": [20.123, 15.456, 365.789, 511.5], "mask": None, "origin": "human", "keypoints": kps},
        {"label_id": "lb-face", "image_id": astro["image_id"], "category": "face",
         "bbox": [176.004, 55.5, 274.25, 180.125], "mask": None, "origin": "human"},
        {"label_id": "lb-blob", "image_id": astro["image_id"], "category": "cat",
         "bbox": [160.0, 240.0, 341.0, 361.0], "mask": encode_rle(blob), "origin": "human"},
        {"label_id": "lb-horse", "image_id": horse["image_id"], "category": "cat",
         "bbox": [18.0, 9.0, 389.0, 313.0], "mask": encode_rle(~skimage.data.horse()), "origin": "human"},
        {"label_id": "lb-ring", "image_id": horse["image_id"], "category": "cat",
         "bbox": [50.0, 50.0, 350.0, 250.0], "mask": encode_rle(ring), "origin": "human"},
    ]


def coco_file(images, labels, date=T0) -> dict:
    rows = [dict(r, file_name=r["uri"]) for r in images]
    obj = build_coco(rows, labels, CATS, keypoints={"person": {"keypoints": KP["person"], "skeleton": []}})
    obj["info"] = dict(obj.get("info") or {}, date_created=date, contributor="reviewer@example.org")
    return obj


def do_import(obj, images, store=None, source="coco/review", exported=()):
    recs = parse_coco_review(obj, where="review.json", fallback_time="2026-01-01T00:00:00+00:00", keypoints=KP)
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    res = import_review(recs, file_name="review.json", import_sha256=digest, source=source, images=images,
                        exported=list(exported), known_review_keys=store.known_review_keys() if store else set(),
                        categories=CATS, keypoint_schema=KP)
    if store is not None:
        store.commit_import(make_import_id(source, digest), res)
    return res


def test_round_trip_through_our_coco_file(images, labels):
    obj = coco_file(images, labels)
    segs = {a["label_id"]: a["segmentation"] for a in obj["annotations"]}
    assert isinstance(segs["lb-blob"], list) and isinstance(segs["lb-ring"], dict)  # polygons and RLE
    res = do_import(obj, images)
    assert res["rejects"] == [] and len(res["reviews"]) == 3  # coffee: listed without annotations
    negative = next(r for r in res["reviews"] if r["image_id"] == images[2]["image_id"])
    assert negative["n_regions"] == 0
    got = {}
    for h in res["human_labels"]:
        got.setdefault((h["image_id"], h["category"]), []).append(h)
    for lab in labels:
        cands = got[(lab["image_id"], lab["category"])]
        h = min(cands, key=lambda c: np.abs(np.subtract(c["bbox"], lab["bbox"])).max())
        assert np.allclose(h["bbox"], lab["bbox"], atol=0.01)
        if lab["mask"]:
            assert mask_iou(h["mask"], lab["mask"]) >= 0.99
        assert h["tool"] == "coco" and h["action"] == "added"
        assert h["annotator"] == "coco-user-" + hashlib.sha256(b"reviewer@example.org").hexdigest()[:12]
    person = got[(images[0]["image_id"], "person")][0]
    assert person["keypoints"] == pytest.approx(labels[0]["keypoints"])


def test_uncompressed_rle_and_keypoints_in_another_order(images):
    horse = images[1]
    m = ~skimage.data.horse()
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    runs, cur, n = [], 0, 0  # uncompressed COCO RLE: column-major runs starting with background
    for v in np.asfortranarray(m).ravel(order="F"):
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    obj = {"info": {"date_created": "2026/11/29"},
           "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "person", "keypoints": ["left_eye", "nose"]}],
           "images": [{"id": 10, "file_name": horse["uri"], "width": 400, "height": 328}],
           "annotations": [
               {"id": 1, "image_id": 10, "category_id": 3, "bbox": [x, y, w, h], "iscrowd": 0,
                "segmentation": {"size": [328, 400], "counts": runs}},
               {"id": 2, "image_id": 10, "category_id": 1, "bbox": [100, 100, 50, 80], "iscrowd": 0,
                "keypoints": [120, 110, 1, 125, 130, 2], "num_keypoints": 2}]}
    res = do_import(obj, images)
    assert res["rejects"] == []
    assert res["reviews"][0]["updated_at"] == "2026-11-29T00:00:00+00:00"
    by = {h["category"]: h for h in res["human_labels"]}
    assert mask_iou(by["cat"]["mask"], encode_rle(m)) == 1.0
    assert by["person"]["keypoints"][:6] == [125, 130, 2, 120, 110, 1]  # reordered into nose, left_eye
    assert by["person"]["keypoints"][6:] == [0.0] * 45


def test_identity_reimport_and_later_file_supersedes(tmp_path, images, labels):
    store = ReviewStore(tmp_path / "s")
    obj = coco_file(images, labels)
    assert len(do_import(obj, images, store)["reviews"]) == 3
    again = copy.deepcopy(obj)
    again["annotations"] = list(reversed(again["annotations"]))  # re-exported in another order
    assert do_import(again, images, store)["skipped"] == 3
    later = coco_file(images, labels[:1], date="2026-12-01T00:00:00Z")
    assert len(do_import(later, images, store)["reviews"]) == 3
    current = store.current_human_labels()
    assert sorted(h["category"] for h in current) == ["person"]  # the later file removed the others
    assert len(store.reviews()) == 6


def test_bad_annotations_reject_their_image_alone(images, labels):
    obj = coco_file(images, labels)
    astro_id = next(i["id"] for i in obj["images"] if i["sha256"] == images[0]["image_id"])
    for a in obj["annotations"]:
        if a["image_id"] == astro_id and a["label_id"] == "lb-face":
            a["bbox"] = [500.0, 10.0, 40.0, 40.0]  # runs past the right edge of the 512 px image
    obj["annotations"].append({"id": 99, "image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5]})
    obj["images"].append({"id": 77, "file_name": "../../etc/passwd.png", "width": 10, "height": 10})
    obj["images"].append({"id": 78, "file_name": "elsewhere/unknown.png", "width": 10, "height": 10})
    crowd = {"id": 100, "image_id": 77, "category_id": 3, "bbox": [0, 0, 2, 2], "iscrowd": 2}
    obj["annotations"].append(crowd)
    res = do_import(obj, images)
    reasons = [r["reason"] for r in res["rejects"]]
    assert len(reasons) == 4, reasons
    assert any("outside the 512x512 image" in r for r in reasons)
    assert any("annotation 99 refers to unknown image id 12345" in r for r in reasons)
    assert any("iscrowd 2 (want 0 or 1)" in r for r in reasons)  # the '..' image is rejected for its bad region first
    assert any("unknown image 'elsewhere/unknown.png'" in r for r in reasons)
    assert {r["image_id"] for r in res["reviews"]} == {images[1]["image_id"], images[2]["image_id"]}
    obj["annotations"] = [a for a in obj["annotations"] if a["id"] != 100]
    assert any("'..' path component" in r["reason"] for r in do_import(obj, images)["rejects"])


@pytest.mark.parametrize("obj, match", [
    ({"images": [], "annotations": {}}, "'annotations' must be a list"),
    ({"images": [], "annotations": [], "categories": [{"name": "x"}]}, "needs an integer 'id'"),
    ({"images": [{"id": 1}, {"id": 1}], "annotations": [], "categories": []}, "image id 1 is used twice"),
])
def test_files_that_are_not_coco_are_rejected_whole(tmp_path, obj, match):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(ExportFormatError, match=match):
        read_review_file(p)
    p.write_text(json.dumps({"tasks": []}))
    with pytest.raises(ExportFormatError, match="neither a COCO file nor a Label Studio export"):
        read_review_file(p)


@pytest.mark.parametrize("seg, match", [
    ([[0, 0, 1e8, 0, 0, 1e8]], "vertex far outside"),  # was: gigabytes in pycocotools, then a segfault
    ([[0.0, 0.0, 500.0, 0.0] * 1500 + [0.0, 500.0]], "boundary longer than"),  # zigzag: 3 M px of edges
    ({"size": [2**40, 2**40], "counts": [2**80]}, "too large"),  # was: OverflowError, the whole file lost
    ({"size": [100000, 100000], "counts": [10**10]}, "too large"),
    ({"size": [512, 512], "counts": "0"}, "RLE runs cover"),
])
def test_hostile_segmentations_reject_their_image_alone(images, labels, seg, match):
    obj = coco_file(images, labels)
    astro_id = next(i["id"] for i in obj["images"] if i["sha256"] == images[0]["image_id"])
    bad = next(a for a in obj["annotations"] if a["image_id"] == astro_id)
    bad.update(segmentation=seg, iscrowd=1 if isinstance(seg, dict) else 0)
    res = do_import(obj, images)
    (rej,) = res["rejects"]
    assert f"annotation {bad['id']}: bad segmentation" in rej["reason"] and match in rej["reason"], rej["reason"]
    assert {r["image_id"] for r in res["reviews"]} == {images[1]["image_id"], images[2]["image_id"]}


def test_a_crowd_region_covering_the_whole_image_as_string_or_list_counts(images, labels):
    """iscrowd RLE over every pixel, compressed (string) and uncompressed (list) counts: the same mask."""
    coffee = images[2]
    h, w = coffee["height"], coffee["width"]
    full = mask_utils.encode(np.asfortranarray(np.ones((h, w), np.uint8)))
    for seg in ({"size": [h, w], "counts": full["counts"].decode()}, {"size": [h, w], "counts": [0, h * w]}):
        obj = coco_file([coffee], [])
        obj["annotations"] = [{"id": 1, "image_id": obj["images"][0]["id"], "category_id": 3, "iscrowd": 1,
                               "bbox": [0, 0, w, h], "area": h * w, "segmentation": seg}]
        res = do_import(obj, [coffee])
        assert res["rejects"] == []
        (row,) = res["human_labels"]
        assert row["iscrowd"] and row["bbox"] == [0, 0, w, h]
        assert mask_iou(row["mask"], json.dumps({"size": [h, w], "counts": full["counts"].decode()})) == 1.0


def test_non_numeric_keypoints_reject_their_image_and_bad_keypoint_names_the_file(images, labels):
    """Was: TypeError out of the parser, so the whole file was refused without naming the problem."""
    obj = coco_file(images, labels)
    person = next(a for a in obj["annotations"] if a.get("keypoints"))
    person["keypoints"][3] = {"x": 1}
    res = do_import(obj, images)
    (rej,) = res["rejects"]
    assert f"annotation {person['id']}: keypoints must be numbers" in rej["reason"]
    assert {r["image_id"] for r in res["reviews"]} == {images[1]["image_id"], images[2]["image_id"]}
    obj = coco_file(images, labels)
    obj["categories"][0]["keypoints"] = True
    with pytest.raises(ValueError, match=r"review.json: category 1 'keypoints' must be a list of names, got True"):
        parse_coco_review(obj, where="review.json", fallback_time=T0, keypoints=KP)
