"""Image-level tags (progressive labeling, ``level: tag``) through Label Studio and CVAT files: the
labeling config's multi-label Choices, tag results in real Label Studio 1.23.2 JSON / JSON-MIN
export shapes, CVAT for images 1.1 ``<tag>`` elements, and the bad answers rejected alone."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import skimage

from labelloop.formats.cvat.reader import parse_cvat
from labelloop.formats.cvat.writer import build_cvat_xml
from labelloop.formats.labelstudio import label_config_xml, parse_export
from labelloop.review.importer import import_review, register_import_tasks
from labelloop.review.regions import RegionError, to_pixels
from labelloop.review.store import ReviewStore
from support.helpers import ls_fixtures

FX = ls_fixtures()
SK = Path(skimage.__file__).parent / "data"
BOXES = ["person", "face", "cat"]
TAGS = ["outdoor", "indoor"]
CATS = BOXES + TAGS
SIZES = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
SRC = "label-studio/project-1"


def image_row(name: str) -> dict:
    w, h = SIZES[name]
    row = {k: None for k in ("batch", "origin_path", "ingest_seq", "format", "mode", "bytes", "exif_orientation",
                             "phash", "near_duplicate_of", "reject_reason")}
    return row | {"image_id": hashlib.sha256((SK / name).read_bytes()).hexdigest(), "uri": f"inbox/b1/photos/{name}",
                  "source_path": f"photos/{name}", "width": w, "height": h, "status": "ok", "duplicate_of": None}


@pytest.fixture(scope="module")
def images():
    return [image_row(n) for n in SIZES]


def tag_result(rid: str, *choices: str) -> dict:
    """A Label Studio 1.23 result of an image-level Choices control (the shape its JSON export writes)."""
    return {"value": {"choices": list(choices)}, "id": rid, "from_name": "tags", "to_name": "image",
            "type": "choices", "origin": "manual"}


def do_import(records, images, exported=(), tag_categories=TAGS):
    return import_review(records, file_name="export.json", import_sha256="0" * 64, source=SRC, images=images,
                         exported=list(exported), known_review_keys=set(), categories=CATS,
                         tag_categories=tag_categories)


def test_label_config_has_a_multi_label_choices_for_the_tags():
    xml = label_config_xml(BOXES, tags=TAGS)
    assert xml == (FX / "label_config.xml").read_text(encoding="utf-8").strip().replace(
        "</View>", '  <Choices name="tags" toName="image" choice="multiple" showInline="true">\n'
                   '    <Choice value="outdoor"/>\n    <Choice value="indoor"/>\n    <Choice value="no objects"/>\n'
                   '  </Choices>\n</View>')
    assert label_config_xml([], tags=["outdoor"]) == (
        '<View>\n  <Image name="image" value="$image"/>\n'
        '  <Choices name="tags" toName="image" choice="multiple" showInline="true">\n'
        '    <Choice value="outdoor"/>\n  </Choices>\n</View>')
    with pytest.raises(ValueError, match="unique"):
        label_config_xml(BOXES, tags=["face"])
    with pytest.raises(ValueError, match="'no objects' is reserved"):
        label_config_xml(BOXES, tags=["no objects"])


def test_json_export_tags_import_and_bad_answers_are_rejected_alone(images):
    exported, rejects = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC,
                                              images=images)
    assert rejects == []
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    tasks[0]["annotations"][0]["result"].append(tag_result("t1", "outdoor"))  # boxes and a tag
    tasks[2]["annotations"][0]["result"] = [tag_result("t3", "indoor", "outdoor")]  # only tags

    def clone(task_id: int, *choices: str) -> dict:
        t = copy.deepcopy(tasks[2])
        t["id"], t["annotations"][0]["id"] = task_id, 1000 + task_id
        t["annotations"][0]["result"] = [tag_result(f"t{task_id}", *choices)]
        return t

    records = parse_export(tasks + [clone(11, "outdoor", "dog"), clone(12, "face")])
    coffee = next(r for r in records if r["task_id"] == "3")
    assert coffee["error"] is None
    assert coffee["regions"] == [{"region_id": "t3", "kind": "tag", "category": None,
                                  "value": {"choices": ["indoor", "outdoor"]}, "original_width": None,
                                  "original_height": None, "type": "choices"}]
    res = do_import(records, images, exported)
    reasons = {r["item"]: r["reason"] for r in res["rejects"]}
    assert set(reasons) == {"task 11 annotation 1011", "task 12 annotation 1012"}
    assert "region t11: tag 'dog' names no category" in reasons["task 11 annotation 1011"]
    assert "region t12: tag 'face' is a box category, not an image-level one" in reasons["task 12 annotation 1012"]
    assert sorted(r["task_id"] for r in res["reviews"]) == ["1", "2", "3"]  # the rest imports
    # the boxes of task 1 are unchanged by its tag; the tag-only image has no box
    astro = images[0]["image_id"]
    assert sorted(h["category"] for h in res["human_labels"] if h["image_id"] == astro and h["action"] != "deleted") \
        == ["face", "person"]
    # without tag categories in the project, any tag answer is rejected with the reason
    res = do_import(records, images, exported, tag_categories=None)
    assert "tag 'outdoor' is a box category" in {r["item"]: r["reason"] for r in res["rejects"]}["task 1 annotation 1"]


def test_json_min_tags_one_choice_as_text_several_as_a_list(images):
    items = json.loads((FX / "export_json_min.json").read_text(encoding="utf-8"))
    items[0]["tags"] = "outdoor"  # Label Studio's JSON-MIN writes a single choice as its text
    items[2]["tags"] = {"choices": ["indoor", "outdoor"]}  # and several as the value object
    bad = copy.deepcopy(items[2]) | {"id": 21, "annotation_id": 21, "tags": "cat"}
    records = parse_export(items + [bad])
    assert [r["regions"][-1]["value"] for r in records if r["task_id"] in ("1", "3")] == [
        {"choices": ["outdoor"]}, {"choices": ["indoor", "outdoor"]}]
    res = do_import(records, images)
    assert [(r["item"], "tag 'cat' is a box category" in r["reason"]) for r in res["rejects"]] == \
        [("task 21 annotation 21", True)]
    assert sorted(r["task_id"] for r in res["reviews"]) == ["1", "2", "3"]


def test_cvat_export_writes_tags_and_the_import_reads_them(images):
    astro, _, coffee = images
    xml = build_cvat_xml(images, [], CATS, task_name="demo/b1", tag_categories=TAGS,
                         tags={coffee["image_id"]: ["indoor"]}, now="2026-12-06T12:00:00+00:00")
    text = xml.decode("utf-8")
    assert "<name>outdoor</name>\n          <type>tag</type>" in text
    assert "<name>face</name>\n          <type>any</type>" in text
    assert '<image id="2" name="inbox/b1/photos/coffee.png" width="600" height="400">\n' \
           '    <tag label="indoor" source="auto"/>\n  </image>' in text
    # the reviewer's CVAT export: a tag added on the astronaut, a box category used as a tag on chelsea
    reviewed = text.replace("<id/>", "<id>7</id>", 1).replace(
        '<image id="0" name="inbox/b1/photos/astronaut.png" width="512" height="512">\n  </image>',
        '<image id="0" name="inbox/b1/photos/astronaut.png" width="512" height="512">'
        '<tag label="outdoor" source="manual"></tag>'
        '<box label="person" source="manual" occluded="0" xtl="20" ytl="15" xbr="365" ybr="512" z_order="0"/></image>'
    ).replace('<image id="1" name="inbox/b1/photos/chelsea.png" width="451" height="300">\n  </image>',
              '<image id="1" name="inbox/b1/photos/chelsea.png" width="451" height="300">'
              '<tag label="cat" source="manual"/></image>')
    records, _ = parse_cvat(reviewed.encode("utf-8"), where="annotations.xml")
    by_name = {r["task_id"]: r for r in records}
    assert by_name["inbox/b1/photos/coffee.png"]["regions"] == [
        {"kind": "tag", "region_id": "tags", "category": None, "value": {"choices": ["indoor"]}}]
    assert by_name["inbox/b1/photos/astronaut.png"]["regions"][-1]["value"] == {"choices": ["outdoor"]}
    res = import_review(records, file_name="annotations.xml", import_sha256="1" * 64, source="cvat/task-7",
                        images=images, exported=[], known_review_keys=set(), categories=CATS,
                        tag_categories=TAGS)
    assert len(res["rejects"]) == 1 and "tag 'cat' is a box category" in res["rejects"][0]["reason"]
    assert sorted(r["image_id"] for r in res["reviews"]) == sorted([astro["image_id"], coffee["image_id"]])
    assert [(h["category"], h["bbox"]) for h in res["human_labels"]] == [("person", [20.0, 15.0, 365.0, 512.0])]


def test_tags_are_stored_with_the_review_and_the_latest_review_decides(tmp_path, images):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    tasks[0]["annotations"][0]["result"].append(tag_result("t1", "outdoor", "indoor"))
    tasks[2]["annotations"][0]["result"] = [tag_result("t3", "indoor")]
    store = ReviewStore(tmp_path / "store")
    res = do_import(parse_export(tasks), images)
    assert sorted((t["image_id"], t["category"]) for t in res["human_tags"]) == sorted(
        [(images[0]["image_id"], "indoor"), (images[0]["image_id"], "outdoor"), (images[2]["image_id"], "indoor")])
    assert all(t["tag_id"].startswith("tg-") and t["source"] == SRC for t in res["human_tags"])
    store.commit_import("first", res)
    astro, chelsea, coffee = (r["image_id"] for r in images)
    assert store.current_tags() == dict(sorted({astro: ["indoor", "outdoor"], chelsea: [], coffee: ["indoor"]}.items()))
    # the reviewer saves the astronaut again, unticking "indoor": the later version decides
    later = copy.deepcopy(tasks[0])
    later["annotations"][0]["updated_at"] = "2026-11-30T09:00:00.000000Z"
    later["annotations"][0]["result"][-1]["value"]["choices"] = ["outdoor"]
    store.commit_import("second", do_import(parse_export([later]), images))
    assert store.current_tags()[astro] == ["outdoor"]


def test_a_reader_of_boxes_only_rejects_tag_answers_by_name(images):
    """Gold registration reads boxes only (no tag categories handed over): a tag answer is named."""
    region = {"kind": "tag", "region_id": "t1", "category": None, "value": {"choices": ["outdoor"]}}
    with pytest.raises(RegionError, match=r"region t1: image-level tags \['outdoor'\] are not read here"):
        to_pixels([region], images[0], set(CATS))
    assert to_pixels([region], images[0], set(CATS), tag_categories=set(TAGS)) == []


def test_tag_pre_labels_go_to_label_studio_as_one_choices_prediction(images):
    """Tag pre-labels (one PREDICTIONS row per tag category, score = best box score of its prompt)
    become one ``choices`` result on the ``tags`` control, never a rectangle; a reviewer who
    accepts the prediction (Label Studio copies its result into the annotation) gives those tags."""
    from labelloop.formats.labelstudio import build_import_tasks
    astro = images[0]
    base = {"image_id": astro["image_id"], "mask": None, "model_id": "m", "checkpoint_sha256": "0" * 64,
            "prompt": None, "run_id": None}
    preds = [base | {"prediction_id": "p1", "category": "person", "bbox": [20.0, 15.0, 365.0, 512.0], "score": 0.9},
             base | {"prediction_id": "p2", "category": "outdoor", "bbox": [0.0, 0.0, 100.0, 50.0], "score": 0.7},
             base | {"prediction_id": "p3", "category": "indoor", "bbox": [5.0, 5.0, 10.0, 10.0], "score": 0.4}]
    tasks, exported = build_import_tasks([astro], preds, model_version="m", batch="b1", tags=TAGS)
    result = tasks[0]["predictions"][0]["result"]
    assert result[0] == {"id": "tags-" + astro["image_id"][:12], "from_name": "tags", "to_name": "image",
                         "type": "choices", "value": {"choices": ["indoor", "outdoor"]}, "score": 0.4}
    assert [r["value"].get("rectanglelabels") for r in result[1:]] == [["person"]]
    assert tasks[0]["predictions"][0]["score"] == 0.4
    assert [e["prediction_id"] for e in exported] == ["p1"]
    # the reviewer accepts the pre-label in Label Studio, unticks "indoor": a real export's shape
    registered, _ = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC,
                                          images=images)
    task = copy.deepcopy(json.loads((FX / "export_json.json").read_text(encoding="utf-8"))[0])  # the astronaut
    accepted = {k: v for k, v in result[0].items() if k != "score"} | {"origin": "prediction",
                                                                          "value": {"choices": ["outdoor"]}}
    task["annotations"][0]["result"] = [accepted]
    res = do_import(parse_export([task]), images, registered)
    assert res["rejects"] == []
    assert [(t["image_id"], t["category"]) for t in res["human_tags"]] == [(astro["image_id"], "outdoor")]
    assert {h["action"] for h in res["human_labels"]} == {"deleted"}  # the pre-sent boxes were removed


def test_no_objects_answer_is_kept_with_the_tags_and_needs_tag_categories(images):
    """The reserved ``no objects`` choice (boxes checked, none there) is stored with the review's
    tags; in a project without tag categories (no tags control) it names no category: rejected."""
    registered, _ = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC,
                                          images=images)
    task = copy.deepcopy(json.loads((FX / "export_json.json").read_text(encoding="utf-8"))[2])  # coffee
    task["annotations"][0]["result"] = [tag_result("t1", "indoor", "no objects")]
    res = do_import(parse_export([task]), images, registered)
    assert res["rejects"] == []
    assert sorted(t["category"] for t in res["human_tags"]) == ["indoor", "no objects"]
    task["annotations"][0]["result"] = [tag_result("t1", "no objects")]
    res = do_import(parse_export([task]), images, registered, tag_categories=[])
    assert len(res["rejects"]) == 1 and res["human_tags"] == []
    assert "region t1: tag 'no objects' names no category" in res["rejects"][0]["reason"]
