"""CVAT for images 1.1: export with pre-annotations, CVAT's mask RLE, import back (labelloop.formats.cvat.writer,
labelloop.formats.cvat.reader) on real photos and real masks (scikit-image's horse silhouette)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import imagehash
import numpy as np
import pytest
import skimage
import skimage.data
from PIL import Image

from labelloop.formats.cvat.reader import parse_cvat
from labelloop.formats.cvat.writer import CvatFormatError, build_cvat_xml, cvat_rle_to_mask, mask_to_cvat_rle
from labelloop.formats.labelstudio import ExportFormatError
from labelloop.geometry.masks import decode_rle, encode_rle, mask_iou
from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.stage import prelabel_batch
from labelloop.review.export import export_batch
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_inbox, import_review
from labelloop.review.store import ReviewStore, make_import_id, review_store
from labelloop.routing.queue import route_batch

SK = Path(skimage.__file__).parent / "data"
CATS = ["person", "face", "cat"]
HORSE = ~skimage.data.horse()  # True = the horse (skimage stores the background as True)


def image_row(name: str, batch: str = "b1") -> dict:
    p = SK / name
    with Image.open(p) as im:
        w, h, ph = im.width, im.height, str(imagehash.phash(im.convert("RGB")))
    return {"image_id": hashlib.sha256(p.read_bytes()).hexdigest(), "uri": f"inbox/{batch}/photos/{name}",
            "source_path": f"photos/{name}", "width": w, "height": h, "status": "ok", "duplicate_of": None,
            "phash": ph}


@pytest.fixture(scope="module")
def images():
    return [image_row(n) for n in ("astronaut.png", "horse.png", "chelsea.png")]


@pytest.fixture(scope="module")
def predictions(images):
    astro, horse, chelsea = images
    hm = encode_rle(HORSE)
    cat = np.zeros((300, 451), bool)
    cat[40:290, 60:400] = True
    cat[120:150, 200:260] = False  # a hole: kept by CVAT's RLE, filled by polygons
    return [
        {"prediction_id": "pr-person", "image_id": astro["image_id"], "category": "person",
         "bbox": [20.123, 15.456, 365.789, 511.5], "score": 0.42, "mask": None},
        {"prediction_id": "pr-face", "image_id": astro["image_id"], "category": "face",
         "bbox": [176.004, 55.5, 274.25, 180.125], "score": 0.62, "mask": None},
        {"prediction_id": "pr-horse", "image_id": horse["image_id"], "category": "cat",
         "bbox": [18.0, 9.0, 389.0, 313.0], "score": 0.91, "mask": hm},
        {"prediction_id": "pr-cat", "image_id": chelsea["image_id"], "category": "cat",
         "bbox": [60.0, 40.0, 400.0, 290.0], "score": 0.8, "mask": encode_rle(cat)},
    ]


def cvat_export(data: bytes) -> bytes:
    """Our annotations.xml as CVAT gives it back: CVAT numbers the task it exports (labelloop's
    own file leaves <id/> empty, and importing that unreviewed file is refused)."""
    return data.replace(b"<id/>", b"<id>7</id>", 1)


def do_import(data: bytes, images, exported=(), store=None, source="cvat/task-7", **kw):
    """A reviewer's CVAT export of ``data`` (see :func:`cvat_export`), parsed and imported."""
    data = cvat_export(data)
    recs, _ = parse_cvat(data, where="annotations.xml", **kw)
    res = import_review(recs, file_name="annotations.xml", import_sha256=hashlib.sha256(data).hexdigest(),
                        source=source, images=images, exported=list(exported),
                        known_review_keys=store.known_review_keys() if store else set(), categories=CATS)
    if store is not None:
        store.commit_import(make_import_id(source, hashlib.sha256(data).hexdigest()), res)
    return res


# ---------------------------------------------------------------------------- CVAT's mask RLE


def test_cvat_rle_hand_computed():
    m = np.zeros((4, 5), np.uint8)
    m[1, 1:3] = 1
    m[2, 2:4] = 1  # crop rows 1-2, cols 1-3: [1 1 0 / 0 1 1] row-major
    counts, left, top, w, h = mask_to_cvat_rle(encode_rle(m))
    assert (left, top, w, h) == (1, 1, 3, 2)
    assert counts == [0, 2, 2, 2]  # starts with background: a leading 0 run
    assert np.array_equal(decode_rle(cvat_rle_to_mask(counts, left, top, w, h, 5, 4)), m)


def test_cvat_rle_round_trips_a_real_mask_exactly():
    counts, left, top, w, h = mask_to_cvat_rle(encode_rle(HORSE))
    assert sum(counts) == w * h
    ys, xs = np.nonzero(HORSE)
    assert (left, top, left + w - 1, top + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
    back = decode_rle(cvat_rle_to_mask(counts, left, top, w, h, HORSE.shape[1], HORSE.shape[0]))
    assert np.array_equal(back.astype(bool), HORSE)


@pytest.mark.parametrize("args, match", [
    (([1, 2], 0, 0, 2, 2), "cover 3 pixels"),
    (([4], 9, 0, 2, 2), "outside"),
    (([-1, 5], 0, 0, 2, 2), "non-negative"),
])
def test_cvat_rle_rejects_bad_runs(args, match):
    with pytest.raises(ValueError, match=match):
        cvat_rle_to_mask(*args, 10, 10)


# ---------------------------------------------------------------------------- export


def test_export_is_cvat_for_images_1_1(images, predictions):
    xml = build_cvat_xml(images, predictions, CATS, task_name="demo/b1", now="2026-11-29T10:00:00+00:00")
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    assert root.findtext("meta/task/updated") == "2026-11-29T10:00:00+00:00"
    assert [lab.findtext("name") for lab in root.iterfind("meta/task/labels/label")] == CATS
    imgs = root.findall("image")
    assert [i.get("name") for i in imgs] == sorted(r["uri"] for r in images)  # full paths, frames 0..
    assert [i.get("id") for i in imgs] == ["0", "1", "2"]
    astro = next(i for i in imgs if i.get("name").endswith("astronaut.png"))
    assert (astro.get("width"), astro.get("height")) == ("512", "512")
    person = astro.find("box[@label='person']")
    assert [person.get(k) for k in ("xtl", "ytl", "xbr", "ybr")] == ["20.12", "15.46", "365.79", "511.50"]
    assert person.get("source") == "auto" and person.findtext("attribute[@name='score']") == "0.4200"
    horse = next(i for i in imgs if i.get("name").endswith("horse.png"))
    mask = horse.find("mask")
    assert mask.get("group_id") == horse.find("box").get("group_id")
    assert re.fullmatch(r"\d+(, \d+)+", mask.get("rle"))  # CVAT writes Python's list repr without brackets
    poly = build_cvat_xml(images, predictions, CATS, task_name="t", mask_shape="polygon", now="x")
    assert b"<polygon" in poly and b"<mask" not in poly


# ---------------------------------------------------------------------------- round trip


def test_round_trip_boxes_to_a_hundredth_and_masks(images, predictions):
    xml = build_cvat_xml(images, predictions, CATS, task_name="demo/b1", now="2026-11-29T10:00:00+00:00")
    res = do_import(xml, images)
    assert res["rejects"] == [] and len(res["reviews"]) == 3
    got = {(h["image_id"], h["category"]): h for h in res["human_labels"]}
    for p in predictions:
        h = got[(p["image_id"], p["category"])]
        assert np.allclose(h["bbox"], p["bbox"], atol=0.01), (h["bbox"], p["bbox"])
        if p["mask"]:
            assert mask_iou(h["mask"], p["mask"]) == 1.0  # CVAT's RLE is lossless, holes included
        assert h["tool"] == "cvat" and h["source"] == "cvat/task-7" and h["action"] == "added"
    # polygons: lossless for the horse (no hole), the cat's hole is filled (IoU = 1 - hole / area)
    res = do_import(build_cvat_xml(images, predictions, CATS, task_name="t", mask_shape="polygon", now="x"), images)
    got = {(h["image_id"], h["category"]): h for h in res["human_labels"]}
    horse, cat = predictions[2], predictions[3]
    assert mask_iou(got[(horse["image_id"], "cat")]["mask"], horse["mask"]) >= 0.99
    assert mask_iou(got[(cat["image_id"], "cat")]["mask"], cat["mask"]) == pytest.approx(1 - 30 * 60 / (250 * 340))


def test_reviewer_actions_link_to_the_exported_predictions(images, predictions):
    exported = [{"source": "labelloop/b1", "image_id": p["image_id"], "region_id": p["prediction_id"],
                 "prediction_id": p["prediction_id"], "category": p["category"], "bbox": p["bbox"],
                 "score": p["score"], "model_version": "m"} for p in predictions]
    xml = build_cvat_xml(images, predictions, CATS, task_name="t", now="2026-11-29T10:00:00+00:00").decode()
    # the reviewer moves the person box, deletes the face and relabels nothing else
    xml = xml.replace('xtl="20.12" ytl="15.46"', 'xtl="60.00" ytl="15.46"')
    xml = re.sub(r'\s*<box label="face".*?</box>', "", xml, flags=re.S)
    res = do_import(xml.encode(), images, exported)
    by = {h["source_prediction_id"]: h for h in res["human_labels"]}
    assert by["pr-person"]["action"] == "corrected" and by["pr-person"]["bbox"][0] == 60.0
    assert by["pr-face"]["action"] == "deleted"
    assert by["pr-horse"]["action"] == "accepted" and by["pr-cat"]["action"] == "accepted"


def test_images_match_by_path_image_id_or_unique_bare_name_never_position(images, predictions):
    xml = build_cvat_xml(images, predictions, CATS, task_name="t", now="2026-11-29T10:00:00+00:00").decode()
    astro = images[0]
    renamed = (xml.replace('name="inbox/b1/photos/horse.png"', 'name="horse.png"')  # bare, unique: matches
               .replace('name="inbox/b1/photos/chelsea.png"', 'name="/mnt/share/inbox/b1/photos/chelsea.png"')
               .replace('name="inbox/b1/photos/astronaut.png"', f'name="images/train/{astro["image_id"][:16]}.png"')
               .replace('id="0"', 'id="9"'))  # frame numbers do not matter
    res = do_import(renamed.encode(), images)
    assert {r["image_id"] for r in res["reviews"]} == {i["image_id"] for i in images} and res["rejects"] == []
    # a bare name two images share is ambiguous: that image is rejected, naming both
    other = dict(images[1], image_id="f" * 64, uri="inbox/b2/photos/horse.png", source_path="elsewhere/horse.png")
    res = do_import(renamed.encode(), [*images, other])
    (rej,) = res["rejects"]
    assert rej["item"] == "image horse.png (frame 2)"  # as every CVAT record names itself
    assert "ambiguous image reference 'horse.png': matches 2 images" in rej["reason"]
    dotdot = xml.replace('name="inbox/b1/photos/horse.png"', 'name="inbox/b1/../../etc/horse.png"')
    reasons = [r["reason"] for r in do_import(dotdot.encode(), images)["rejects"]]
    assert len(reasons) == 1 and "'..' path component" in reasons[0]


def test_rotated_box_becomes_enclosing_box_with_rotation_kept(images):
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><id>7</id><updated>2026-11-29T10:00:00+00:00</updated>
<owner><username>alice</username></owner></task></meta>
<image id="0" name="{images[0]['uri']}" width="512" height="512">
  <box label="person" source="manual" occluded="1" xtl="100.00" ytl="200.00" xbr="140.00" ybr="220.00"
       rotation="90.00" z_order="0"/>
</image></annotations>""".encode()
    res = do_import(xml, images)
    (h,) = res["human_labels"]
    assert h["bbox"] == pytest.approx([110, 190, 130, 230])  # 40 x 20 turned about its centre (120, 210)
    attrs = json.loads(h["attributes"])
    assert attrs["rotation"] == 90 and attrs["rotation_pivot"] == "center"
    assert attrs["rotated_box_xywh"] == [100, 200, 40, 20] and h["occluded"] is True
    assert h["annotator"] == "cvat-user-" + hashlib.sha256(b"alice").hexdigest()[:12]


def test_skeleton_keypoints_carry_visibility(images):
    names = ["nose", "left_eye", "right_eye"]
    xml = f"""<annotations><version>1.1</version>
<meta><task><id>7</id><updated>2026-11-29T10:00:00+00:00</updated></task></meta>
<image id="0" name="{images[0]['uri']}" width="512" height="512">
  <box label="person" occluded="0" xtl="100" ytl="50" xbr="300" ybr="500" group_id="1"/>
  <skeleton label="person" group_id="1">
    <points label="nose" outside="0" occluded="0" points="200.50,120.25"/>
    <points label="left_eye" outside="0" occluded="1" points="210.00,100.00"/>
    <points label="right_eye" outside="1" occluded="0" points="190.00,100.00"/>
  </skeleton>
</image></annotations>""".encode()
    recs, _ = parse_cvat(xml, where="a.xml", keypoints={"person": names})
    res = import_review(recs, file_name="a.xml", import_sha256="0" * 64, source="cvat/task-7", images=images,
                        exported=[], known_review_keys=set(), categories=CATS, keypoint_schema={"person": names})
    (h,) = res["human_labels"]
    assert h["bbox"] == [100, 50, 300, 500]
    assert h["keypoints"] == [200.5, 120.25, 2, 210, 100, 1, 0, 0, 0]
    # exported skeletons come back the same
    pred = {"prediction_id": "p", "image_id": images[0]["image_id"], "category": "person", "bbox": [100, 50, 300, 500],
            "score": 0.9, "keypoints": h["keypoints"]}
    out = build_cvat_xml(images[:1], [pred], CATS, task_name="t", keypoints={"person": names}, now="x")
    recs, _ = parse_cvat(cvat_export(out), where="b.xml", keypoints={"person": names})
    assert recs[0]["regions"][0]["keypoints"] == h["keypoints"]


# ---------------------------------------------------------------------------- identity, bad files


def test_reimport_skips_and_a_later_save_supersedes(tmp_path, images, predictions):
    store = ReviewStore(tmp_path / "s")
    v1 = build_cvat_xml(images, predictions, CATS, task_name="t", now="2026-11-29T10:00:00+00:00")
    assert len(do_import(v1, images, store=store)["reviews"]) == 3
    dumped_again = v1.replace(b"<dumped>2026-11-29T10:00:00+00:00", b"<dumped>2026-12-01T08:00:00+00:00")
    assert do_import(dumped_again, images, store=store)["skipped"] == 3
    v2 = v1.replace(b"<updated>2026-11-29T10:00:00+00:00", b"<updated>2026-11-30T10:00:00+00:00")
    v2 = v2.replace(b'xtl="20.12"', b'xtl="22.00"')
    assert len(do_import(v2, images, store=store)["reviews"]) == 3
    person = [h for h in store.current_human_labels() if h["category"] == "person"]
    assert len(person) == 1 and person[0]["bbox"][0] == 22.0
    assert len(store.reviews()) == 6  # both versions in the history
    other_task = do_import(v1, images, store=store, source="cvat/task-8")
    assert len(other_task["reviews"]) == 3  # same frames of another task never collide


def test_one_bad_image_is_rejected_alone(images, predictions):
    xml = build_cvat_xml(images, predictions, CATS, task_name="t", now="2026-11-29T10:00:00+00:00").decode()
    xml = xml.replace('<box label="cat"', '<tag label="cat"/><box label="cat"', 1)
    xml = xml.replace('<box label="face"', '<box label="dog"', 1)
    res = do_import(xml.encode(), images)
    reasons = sorted(r["reason"] for r in res["rejects"])
    assert len(reasons) == 2
    # a tag on a box category (the project has no level: tag category) rejects its image
    assert any("tag 'cat' is a box category, not an image-level one" in r for r in reasons)
    assert any("unknown category 'dog'" in r for r in reasons)
    assert len(res["reviews"]) == 1


@pytest.mark.parametrize("body, match", [
    (b"this is not xml", "not valid XML"),
    (b"<html><body/></html>", "root element <html> is not <annotations>"),
    (b"<annotations><version>1.0</version></annotations>", "labelloop reads CVAT for images 1.1"),
    (b"<annotations><version>1.1</version><meta><task/></meta><track id='0' label='cat'/></annotations>",
     "CVAT for video"),
    (b"<annotations><version>1.1</version><meta><task><id>1</id></task></meta></annotations>", "no <updated>"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
     b"<annotations>&b;</annotations>", "refused unsafe XML"),
])
def test_files_that_are_not_cvat_exports_are_rejected_whole(body, match):
    with pytest.raises(CvatFormatError, match=match):
        parse_cvat(body, where="x.xml")


def test_cvat_zip_and_size_guard(tmp_path, images, predictions):
    import zipfile

    xml = cvat_export(build_cvat_xml(images, predictions, CATS, task_name="t", now="2026-11-29T10:00:00+00:00"))
    z = tmp_path / "task_7_annotations.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("annotations.xml", xml)
    got = read_review_file(z)
    assert got["format"] == "cvat" and len(got["records"]) == 3 and got["default_source"] == "cvat/task-7"
    assert z.stat().st_size < len(xml) - 1  # the zip itself passes the limit, its member does not
    with pytest.raises(ExportFormatError, match=r"annotations.xml unpacks to .* MiB, over the .* limit"):
        read_review_file(z, max_bytes=len(xml) - 1)


def test_workspace_round_trip_through_the_exported_annotations_xml(tmp_path):
    """The batch export writes annotations.xml; a CVAT reviewer's export of it (here: the file
    with one box moved and the task's <updated> time) imports through the review inbox path."""
    import shutil

    from labelloop.ingest.files import ingest
    from labelloop.workspace.init import init_workspace
    from labelloop.workspace.layout import Workspace
    from resources.prelabeler import PreLabelerResource
    from support.helpers import skimage_data

    src = tmp_path / "src" / "photos"
    src.mkdir(parents=True)
    for n in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    ingest(ws, src, "b1")
    model = PreLabelerResource().get(ws.config(), str(ws.root))
    scan_batch(ws, "b1")
    prelabel_batch(ws, "b1", model, run_id="t")
    route_batch(ws, "b1", model.model_id)
    export_batch(ws, "b1", model.model_id, set())
    xml = (ws.review_out / "b1" / "annotations.xml").read_text(encoding="utf-8")
    tasks = json.loads((ws.review_out / "b1" / "tasks.json").read_text())
    names = re.findall(r'<image id="\d+" name="([^"]+)"', xml)
    assert sorted(names) == sorted(f"inbox/b1/{t['data']['source_path']}" for t in tasks) and names
    boxes = re.findall(r'<box label="(\w+)"', xml)
    # our own file, dropped back unreviewed, is refused: its images would count as reviewed
    with pytest.raises(CvatFormatError, match=r"own.xml: this is labelloop's own CVAT pre-annotation file"):
        parse_cvat(xml.encode(), where="own.xml")
    reviewed = re.sub(r"<updated>[^<]*</updated>", "<updated>2030-01-01T00:00:00+00:00</updated>",
                      xml.replace("<id/>", "<id>41</id>", 1))
    (ws.review_inbox).mkdir(exist_ok=True)
    (ws.review_inbox / "task_41.xml").write_text(reviewed, encoding="utf-8")
    out = import_inbox(ws)
    (f,) = out["files"]
    assert f["format"] == "cvat" and f["source"] == "cvat/task-41" and f["rejects"] == 0, f
    assert f["reviews"] == len(names)
    hl = review_store(ws).current_human_labels()
    assert sorted(h["category"] for h in hl if h["action"] != "deleted") == sorted(boxes)
    assert all(h["action"] == "accepted" for h in hl)  # unchanged boxes: accepted, linked to our predictions
    assert import_inbox(ws)["new_reviews"] == 0  # the sensor's next look adds nothing
