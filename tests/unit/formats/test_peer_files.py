"""Review files as other tools write them: label-studio-sdk's own COCO converter (what Label
Studio's "COCO" export runs) on a real Label Studio 1.23.2 export, bare file names, ``iscrowd``
strings, CVAT text attributes, masks that contradict their boxes, and Unicode normalisation.
Each case failed before: the reviewed negative of a null-size image was rejected, the second
image entry of a file name was dropped as "already imported", and so on."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from labelloop.formats.coco.reader import parse_coco_review
from labelloop.formats.cvat.reader import parse_cvat
from labelloop.geometry.masks import encode_rle
from labelloop.review.importer import import_review
from support.helpers import FIXTURES, skimage_data

LS = FIXTURES / "label-studio-1.23.2"
CATS = ["person", "face", "cat"]
SIZES = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}


def image_row(name: str, folder: str = "photos") -> dict:
    data = (skimage_data() / name).read_bytes()
    w, h = SIZES[name]
    return {"image_id": hashlib.sha256(data).hexdigest(), "uri": f"inbox/b1/{folder}/{name}",
            "source_path": f"{folder}/{name}", "width": w, "height": h, "status": "ok", "duplicate_of": None}


@pytest.fixture(scope="module")
def images():
    return [image_row(n) for n in SIZES]


def do_import(obj: dict, images: list[dict], source: str = "coco/result") -> dict:
    recs = parse_coco_review(obj, where="result.json", fallback_time="2026-01-01T00:00:00+00:00")
    return import_review(recs, file_name="result.json", import_sha256=hashlib.sha256(json.dumps(obj).encode()).hexdigest(),
                         source=source, images=images, exported=[], known_review_keys=set(), categories=CATS)


def sdk_coco(tmp_path: Path, tasks: list[dict]) -> dict:
    """label-studio-sdk 2.1.2's COCO converter (Label Studio's own COCO export) run on ``tasks``."""
    from label_studio_sdk.converter import Converter

    src = tmp_path / "export.json"
    src.write_text(json.dumps(tasks))
    logging.disable(logging.WARNING)
    try:
        Converter(config=(LS / "label_config.xml").read_text(), project_dir=None, download_resources=False
                  ).convert_to_coco(input_data=str(src), output_dir=str(tmp_path / "coco"), is_dir=False)
    finally:
        logging.disable(logging.NOTSET)
    return json.loads((tmp_path / "coco" / "result.json").read_text())


def test_label_studio_coco_export_keeps_the_reviewed_negative(tmp_path, images):
    obj = sdk_coco(tmp_path, json.loads((LS / "export_json.json").read_text()))
    coffee = next(i for i in obj["images"] if i["file_name"].endswith("coffee.png"))
    assert (coffee["width"], coffee["height"]) == (None, None)  # what Label Studio writes for it
    res = do_import(obj, images)
    assert res["rejects"] == []
    assert {r["image_id"] for r in res["reviews"]} == {i["image_id"] for i in images}  # coffee: a reviewed negative
    boxes = sorted((r["category"], [round(v) for v in r["bbox"]]) for r in res["human_labels"])
    assert boxes == [("cat", [0, 0, 451, 300]), ("face", [176, 55, 274, 180]), ("person", [20, 15, 365, 512])]


def test_sdk_converter_entries_of_one_image_merge(tmp_path, images):
    tasks = json.loads((LS / "export_json.json").read_text())
    second = copy.deepcopy(tasks[0]["annotations"][0])  # a second annotation of astronaut.png
    second.update(id=9, completed_by=2)
    for r in second["result"]:
        r["id"] += "-b"
    second["result"][0]["value"]["x"] = 10.0  # its face box elsewhere; its person box the same
    tasks[0]["annotations"].append(second)
    obj = sdk_coco(tmp_path, tasks)
    astro = [i for i in obj["images"] if i["file_name"].endswith("astronaut.png")]
    assert len(astro) == 2  # one entry per Label Studio annotation, both named astronaut.png
    res = do_import(obj, images)
    assert res["rejects"] == [] and len(res["reviews"]) == 3
    mine = sorted((r["category"], round(r["bbox"][0])) for r in res["human_labels"] if r["image_id"] == images[0]["image_id"])
    assert mine == [("face", 51), ("face", 176), ("person", 20)]  # both faces; the identical person once


def _coco(images: list[dict], file_names: list[str], anns: list[dict]) -> dict:
    return {"info": {"date_created": "2026-11-30T10:00:00Z"},
            "images": [{"id": k + 1, "file_name": f, "width": im["width"], "height": im["height"]}
                       for k, (im, f) in enumerate(zip(images, file_names))],
            "annotations": anns, "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CATS)]}


def test_a_unique_bare_file_name_matches_and_a_shared_one_is_ambiguous(images):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 200], "iscrowd": 0}]
    res = do_import(_coco(images[:1], ["astronaut.png"], anns), images)
    assert res["rejects"] == [] and res["reviews"][0]["image_id"] == images[0]["image_id"]
    twin = dict(image_row("astronaut.png", "other"), image_id="e" * 64)
    (rej,) = do_import(_coco(images[:1], ["astronaut.png"], anns), [*images, twin])["rejects"]
    assert "ambiguous image reference 'astronaut.png': matches 2 images" in rej["reason"]


@pytest.mark.parametrize("value, crowd", [("false", False), ("true", True), ("0", False), ("1", True),
                                          (False, False), (True, True)])
def test_iscrowd_as_strings_and_booleans(images, value, crowd):
    w, h = images[2]["width"], images[2]["height"]
    full = {"size": [h, w], "counts": [0, w * h]}
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, w, h], "iscrowd": value,
             "segmentation": full if crowd else [[0, 0, w, 0, w, h, 0, h]]}]
    res = do_import(_coco([images[2]], [images[2]["uri"]], anns), images)
    assert res["rejects"] == [] and [r["iscrowd"] for r in res["human_labels"]] == [crowd]
    anns[0]["iscrowd"] = "maybe"
    (rej,) = do_import(_coco([images[2]], [images[2]["uri"]], anns), images)["rejects"]
    assert "annotation 1: iscrowd 'maybe' (want 0 or 1)" in rej["reason"]


def test_a_mask_that_contradicts_its_box_is_rejected_naming_it(images):
    astro = images[0]
    m = np.zeros((512, 512), np.uint8)
    m[100:140, 300:420] = 1  # 120 wide, 40 high
    rle = mask_utils.encode(np.asfortranarray(m))
    good = {"size": [512, 512], "counts": rle["counts"].decode()}
    transposed = mask_utils.encode(np.asfortranarray(m.T))  # the runs read row-major
    wrong = {"size": [512, 512], "counts": transposed["counts"].decode()}
    box = [300, 100, 120, 40]
    ok = do_import(_coco([astro], [astro["uri"]], [{"id": 7, "image_id": 1, "category_id": 3, "bbox": box,
                                                    "iscrowd": 0, "segmentation": good}]), images)
    assert ok["rejects"] == [] and ok["human_labels"][0]["bbox"] == [300, 100, 420, 140]
    for seg in (wrong, [[0, 0, 500, 0, 500, 500, 0, 500]]):  # row-major RLE; a polygon far outside the box
        res = do_import(_coco([astro], [astro["uri"]], [{"id": 7, "image_id": 1, "category_id": 3, "bbox": box,
                                                         "iscrowd": 0, "segmentation": seg}]), images)
        (rej,) = res["rejects"]
        assert "region 7: the mask [" in rej["reason"] and "reaches outside its bbox [300.0, 100.0, 420.0, 140.0]" \
            in rej["reason"], rej["reason"]
        assert res["human_labels"] == []


def test_a_name_that_differs_only_by_unicode_normalisation_matches():
    data = (skimage_data() / "coffee.png").read_bytes()
    nfc = unicodedata.normalize("NFC", "photos/café.png")
    row = {"image_id": hashlib.sha256(data).hexdigest(), "uri": f"inbox/b1/{nfc}", "source_path": nfc,
           "width": 600, "height": 400, "status": "ok", "duplicate_of": None}
    nfd = unicodedata.normalize("NFD", f"inbox/b1/{nfc}")
    assert nfd != row["uri"]  # macOS writes names decomposed
    res = do_import(_coco([row], [nfd], []), [row])
    assert res["rejects"] == [] and res["reviews"][0]["image_id"] == row["image_id"]


def test_cvat_text_attributes_stay_text_and_declared_numbers_are_numbers(images):
    astro = images[0]
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><id>7</id><updated>2026-11-29T10:00:00+00:00</updated>
<labels><label><name>person</name><attributes>
  <attribute><name>track_no</name><mutable>False</mutable><input_type>text</input_type><default_value></default_value><values></values></attribute>
  <attribute><name>age</name><mutable>False</mutable><input_type>number</input_type><default_value>0</default_value><values>0\n120\n1</values></attribute>
</attributes></label></labels></task></meta>
<image id="0" name="{astro['uri']}" width="512" height="512">
  <box label="person" source="manual" occluded="0" xtl="10" ytl="20" xbr="110" ybr="220" z_order="0">
    <attribute name="track_no">0003</attribute><attribute name="age">34</attribute>
  </box>
</image></annotations>""".encode()
    recs, _ = parse_cvat(xml, where="annotations.xml")
    res = import_review(recs, file_name="annotations.xml", import_sha256="a" * 64, source="cvat/task-7",
                        images=images, exported=[], known_review_keys=set(), categories=CATS)
    (row,) = res["human_labels"]
    assert json.loads(row["attributes"]) == {"track_no": "0003", "age": 34.0, "cvat_source": "manual"}


def test_encode_rle_of_the_mask_is_unchanged_by_the_box_check(images):
    """The fit check reads the mask's extent only: an exact mask with its own tight box imports as it is."""
    m = np.zeros((300, 451), bool)
    m[40:290, 60:400] = True
    rle = json.loads(encode_rle(m))
    chelsea = images[1]
    res = do_import(_coco([chelsea], [chelsea["uri"]], [{"id": 1, "image_id": 1, "category_id": 3,
                                                         "bbox": [60, 40, 340, 250], "iscrowd": 0,
                                                         "segmentation": rle}]), images)
    assert res["rejects"] == [] and json.loads(res["human_labels"][0]["mask"]) == rle


def test_a_prediction_shown_in_the_review_and_the_suspects_exports_is_decided_once(images):
    """COCO re-import of an image that was also in the label-suspects export: the prediction is
    accepted once, not accepted and deleted (both exports show it; COCO has no region ids)."""
    astro = images[0]
    shown = {"image_id": astro["image_id"], "prediction_id": "pr-person", "category": "person",
             "bbox": [20.0, 15.0, 365.0, 512.0], "score": 0.41, "model_version": "m@1", "task_id": "1"}
    exported = [{**shown, "source": "label-studio/project-7", "region_id": "p2"},
                {**shown, "source": "labelloop/label-suspects", "region_id": "pr-person"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 15, 345, 497], "iscrowd": 0}]
    recs = parse_coco_review(_coco([astro], [astro["uri"]], anns), where="r.json", fallback_time="2026-01-01T00:00:00+00:00")
    res = import_review(recs, file_name="r.json", import_sha256="b" * 64, source="coco/r", images=images,
                        exported=exported, known_review_keys=set(), categories=CATS)
    actions = sorted((r["action"], r["source_prediction_id"]) for r in res["human_labels"])
    assert actions == [("accepted", "pr-person")]


def test_an_item_rejected_again_by_a_later_import_is_one_reject(tmp_path, images):
    """The same file read again under another import (the CLI, then a run) rejects the same
    annotation again: the store lists it once, not once per import."""
    from labelloop.review.store import ReviewStore

    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 200], "iscrowd": "maybe"}]
    obj = _coco(images[:1], [images[0]["uri"]], anns)
    store = ReviewStore(tmp_path / "store")
    for import_id in ("first-import", "second-import"):
        res = do_import(obj, images)
        assert len(res["rejects"]) == 1
        store.commit_import(import_id, res)
    (rej,) = store.rejects()
    assert "iscrowd 'maybe'" in rej["reason"]


def test_inputs_found_by_trying_to_break_the_readers(tmp_path, images):
    """Each crashed or was taken silently before: a date at the edge of the calendar, JSON nested
    100,000 deep, a NaN score, a declared number that is text, and a foreign control on another
    image object beside labelloop's own."""
    from labelloop.formats.labelstudio import ExportFormatError, parse_export
    from labelloop.review.files import read_review_file

    astro = images[0]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 200], "iscrowd": 0}]
    obj = _coco([astro], [astro["uri"]], anns)
    obj["info"]["date_created"] = "9999-12-31T23:59:59-23:59"  # OverflowError before: now the fallback time
    recs = parse_coco_review(obj, where="r.json", fallback_time="2026-01-01T00:00:00+00:00")
    assert recs[0]["updated_at"] == "2026-01-01T00:00:00+00:00" and recs[0]["error"] is None
    deep = tmp_path / "deep.json"
    deep.write_text('{"images": [], "annotations": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ExportFormatError, match="deep.json: JSON nested too deeply"):
        read_review_file(deep)
    anns[0]["score"] = float("nan")
    (rej,) = do_import(_coco([astro], [astro["uri"]], anns), images)["rejects"]
    assert "annotation 1: score nan is not a finite number" in rej["reason"]
    xml = f"""<annotations><version>1.1</version><meta><task><id>7</id><updated>2026-11-29T10:00:00+00:00</updated>
<labels><label><name>person</name><attributes><attribute><name>age</name><input_type>number</input_type>
</attribute></attributes></label></labels></task></meta>
<image id="0" name="{astro['uri']}" width="512" height="512">
<box label="person" occluded="0" xtl="10" ytl="20" xbr="110" ybr="220"><attribute name="age">abc</attribute></box>
</image></annotations>""".encode()
    recs, _ = parse_cvat(xml, where="annotations.xml")
    assert "attribute 'age': 'abc' is not a finite number" in recs[0]["error"]
    task = json.loads((LS / "export_json.json").read_text())[:1]
    extra = dict(task[0]["annotations"][0]["result"][0], id="q1", from_name="poly", to_name="image2",
                 type="polygonlabels", value={"points": [[1, 1], [5, 1], [5, 5]], "polygonlabels": ["cat"]})
    task[0]["annotations"][0]["result"].append(extra)
    assert "regions on several image objects ['image', 'image2']" in parse_export(task)[0]["error"]
