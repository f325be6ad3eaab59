"""labelloop.formats.labelstudio.reader against real Label Studio 1.23.2 files (shared/fixtures/label-studio-1.23.2)."""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from labelloop.formats.labelstudio import (
    ExportFormatError,
    build_import_tasks,
    image_ref_path,
    image_reference,
    label_config_xml,
    parse,
    parse_export,
    read_export,
    region_bbox,
)
from labelloop.formats.records import annotator_pseudonym, default_source
from labelloop.geometry.boxes import ls_to_xyxy
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_review
from support.helpers import ls_fixtures

FX = ls_fixtures()
CATS = ["person", "face", "cat"]


def load(name: str):
    return json.loads((FX / name).read_text(encoding="utf-8"))


def close(a, b, tol=1e-6):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


# ---------------------------------------------------------------------------- config, import


def _elements(xml: str):
    return [(e.tag, dict(e.attrib)) for e in ET.fromstring(xml).iter()]


def test_label_config_equivalent_to_fixture():
    assert _elements(label_config_xml(CATS)) == _elements((FX / "label_config.xml").read_text())


def test_label_config_escapes_values_and_rejects_bad_lists():
    cats = ['a&b', 'say "hi"', "<x>"]
    values = [a["value"] for t, a in _elements(label_config_xml(cats)) if t == "Label"]
    assert values == cats
    for bad in ([], ["a", "a"], ["a", ""]):
        with pytest.raises(ValueError):
            label_config_xml(bad)


def test_image_reference_is_local_files_url_and_round_trips():
    ref = image_reference("inbox/batch1/photos/astronaut.png")
    assert ref == "/data/local-files/?d=inbox/batch1/photos/astronaut.png"
    odd = "inbox/b 1/x#y&z+é.png"
    ref = image_reference(odd)
    assert " " not in ref and "#" not in ref and "&z" not in ref
    assert image_ref_path(ref) == odd
    assert image_ref_path("/data/local-files/?d=photos/astronaut.png") == "photos/astronaut.png"
    assert image_ref_path("https://host/media/a%20b.png?sig=1") == "media/a b.png"
    assert image_ref_path("s3://bucket/inbox/a.png") == "inbox/a.png"
    assert image_ref_path("photos/x.png") == "photos/x.png"


def _img(name, w, h, iid=None, uri=None):
    return {"image_id": iid or hashlib.sha256(name.encode()).hexdigest(), "uri": uri or f"inbox/b1/{name}",
            "source_path": name, "width": w, "height": h, "status": "ok", "duplicate_of": None}


def test_build_import_tasks_matches_fixture_region():
    astro = _img("astronaut.png", 512, 512)
    pred = {"prediction_id": "pr-1", "image_id": astro["image_id"], "category": "face",
            "bbox": [180.0, 60.0, 270.0, 175.0], "score": 0.62}
    tasks, exported = build_import_tasks([astro], [pred], model_version="opencv-haar@abc123", batch="b1")
    assert len(tasks) == 1
    region = tasks[0]["predictions"][0]["result"][0]
    want = load("import_tasks.json")[0]["predictions"][0]["result"][0]
    assert set(region) == set(want)
    assert {k: v for k, v in region.items() if k != "id"} == {k: v for k, v in want.items() if k != "id"}
    assert region["value"] == {"x": 35.15625, "y": 11.71875, "width": 17.578125, "height": 22.4609375,
                               "rotation": 0, "rectanglelabels": ["face"]}
    assert region["id"] == "pr-1"
    assert tasks[0]["data"] == {"image": "/data/local-files/?d=inbox/b1/astronaut.png",
                                "image_id": astro["image_id"], "source_path": "astronaut.png", "batch": "b1"}
    assert tasks[0]["predictions"][0]["model_version"] == "opencv-haar@abc123"
    assert tasks[0]["predictions"][0]["score"] == 0.62
    assert exported == [{"source": "labelloop/b1", "image_id": astro["image_id"], "region_id": "pr-1",
                         "prediction_id": "pr-1", "category": "face", "bbox": [180.0, 60.0, 270.0, 175.0],
                         "score": 0.62, "model_version": "opencv-haar@abc123", "mask": None}]
    # the box comes back exactly
    assert ls_to_xyxy(region["value"], 512, 512) == [180.0, 60.0, 270.0, 175.0]


def test_build_import_tasks_order_scores_and_duplicates():
    a, c = _img("z/astronaut.png", 512, 512), _img("coffee.png", 600, 400)
    dup = dict(a, source_path="a/copy.png", duplicate_of="z/astronaut.png")
    preds = [
        {"prediction_id": "p-hi", "image_id": a["image_id"], "category": "person", "bbox": [1, 2, 3, 4], "score": 0.9},
        {"prediction_id": "p-lo", "image_id": a["image_id"], "category": "face", "bbox": [5, 6, 7, 8], "score": 0.4},
        {"prediction_id": "p-x", "image_id": "not-sent", "category": "face", "bbox": [5, 6, 7, 8], "score": 0.4},
    ]
    tasks, exported = build_import_tasks([a, dup, c], preds, model_version="m", batch="b2")
    assert [t["data"]["source_path"] for t in tasks] == ["coffee.png", "z/astronaut.png"]  # one task per image_id
    assert tasks[0]["predictions"] == [{"model_version": "m", "score": 0.0, "result": []}]
    assert tasks[1]["predictions"][0]["score"] == 0.4  # lowest region score
    assert [r["id"] for r in tasks[1]["predictions"][0]["result"]] == ["p-hi", "p-lo"]
    assert [e["prediction_id"] for e in exported] == ["p-hi", "p-lo"]
    assert build_import_tasks([c, a, dup], list(reversed(preds)), model_version="m", batch="b2") == (tasks, exported)


# ---------------------------------------------------------------------------- exports


def _px(records):
    return {r["task_id"]: [(g["category"], region_bbox(g)) for g in r["regions"]] for r in records}


def test_parse_export_json_and_json_min_agree():
    full = read_export(FX / "export_json.json")
    mini = read_export(FX / "export_json_min.json")
    assert len(full) == len(mini) == 3
    assert {r["format"] for r in full} == {"json"} and {r["format"] for r in mini} == {"json-min"}
    ids = lambda recs: [(r["task_id"], r["tool_annotation_id"], r["updated_at"]) for r in recs]  # noqa: E731
    assert ids(full) == ids(mini) == [
        ("1", "1", "2026-11-29T08:15:58.515742Z"),
        ("2", "2", "2026-11-29T08:15:58.154524Z"),
        ("3", "3", "2026-11-29T08:15:58.293115Z"),
    ]
    for recs in (full, mini):
        px = _px(recs)
        (face, fbox), (person, pbox) = px["1"]
        assert (face, person) == ("face", "person")
        assert close(fbox, (176, 55, 274, 180)) and close(pbox, (20, 15, 365, 512))
        assert px["2"][0][0] == "cat" and close(px["2"][0][1], (0, 0, 451, 300))
        assert px["3"] == []
        assert all(r["annotator"] == "ls-user-1" and not r["was_cancelled"] and r["error"] is None for r in recs)
        assert [r["image_ref"] for r in recs] == [f"/data/local-files/?d=photos/{n}.png"
                                                  for n in ("astronaut", "chelsea", "coffee")]


def test_parse_export_json_keeps_project_and_parent_prediction():
    full = read_export(FX / "export_json.json")
    assert {r["project"] for r in full} == {"1"}
    astro = full[0]
    assert [g["region_id"] for g in astro["regions"]] == ["p1", "p2"]
    assert astro["parent_prediction_id"] == "1"
    assert [(g["region_id"], g["category"], g["score"]) for g in astro["parent_regions"]] == [
        ("p1", "face", 0.62), ("p2", "person", 0.41)]
    assert close(region_bbox(astro["parent_regions"][1]), (30, 40, 360, 512))
    mini = read_export(FX / "export_json_min.json")
    assert all(r["project"] is None and r["parent_regions"] == [] for r in mini)
    assert all(g["region_id"] is None for r in mini for g in r["regions"])


def test_default_source(tmp_path):
    inbox = tmp_path / "review_inbox"
    (inbox / "projA").mkdir(parents=True)
    for src, dest in (("export_json.json", inbox / "x.json"), ("export_json_min.json", inbox / "projA" / "export.json"),
                      ("export_json_min.json", inbox / "export_min.json"), ("export_json_min.json", tmp_path / "elsewhere.json")):
        shutil.copyfile(FX / src, dest)
    assert read_review_file(inbox / "x.json", inbox=inbox)["default_source"] == "label-studio/project-1"
    assert read_review_file(inbox / "projA" / "export.json", inbox=inbox)["default_source"] == "label-studio/projA"
    assert read_review_file(inbox / "export_min.json", inbox=inbox)["default_source"] == "label-studio/export_min"
    assert read_review_file(tmp_path / "elsewhere.json")["default_source"] == "label-studio/elsewhere"
    assert default_source("label-studio", tmp_path / "elsewhere.json", "project-1", inbox) == "label-studio/project-1"
    two = json.loads((FX / "export_json.json").read_text())
    two[1]["project"] = "2"
    with pytest.raises(ExportFormatError, match="several"):
        parse(two, where="x.json", fallback_time="2026-12-01T00:00:00+00:00")


def test_annotator_pseudonyms():
    h = hashlib.sha256(b"reviewer@example.org").hexdigest()[:12]
    assert annotator_pseudonym("label-studio", 7) == "ls-user-7"
    assert annotator_pseudonym("label-studio", "7") == "ls-user-7"
    assert annotator_pseudonym("label-studio", "reviewer@example.org") == f"ls-user-{h}"
    assert annotator_pseudonym("label-studio", {"id": 3, "email": "reviewer@example.org"}) == f"ls-user-{h}"
    assert annotator_pseudonym("label-studio", {"id": 3}) == "ls-user-3"
    assert annotator_pseudonym("label-studio", None) == "ls-user-unknown"
    # one rule for every tool: CVAT usernames and COCO contributors the same way, with the tool's prefix
    assert annotator_pseudonym("cvat", "reviewer@example.org") == f"cvat-user-{h}"
    assert annotator_pseudonym("coco", "") == "coco-user-unknown"


# ---------------------------------------------------------------------------- malformed files


def test_not_json_and_wrong_shapes_name_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('[{"id": 1,', encoding="utf-8")
    with pytest.raises(ExportFormatError, match=r"broken\.json: not valid JSON"):
        read_export(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'["caf\xe9"]')
    with pytest.raises(ExportFormatError, match="latin.json: not UTF-8"):
        read_export(latin)
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"tasks": load("export_json.json")}), encoding="utf-8")
    with pytest.raises(ExportFormatError, match=r"obj\.json: expected a JSON list.*got a dict"):
        read_export(obj)
    imp = tmp_path / "import.json"
    imp.write_text((FX / "import_tasks.json").read_text(), encoding="utf-8")
    with pytest.raises(ExportFormatError, match="import file"):
        read_export(imp)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda t: t.pop("id"), "task at index 1 has no 'id'"),
        (lambda t: t.update(annotations=None, annotation_id=None), "index 1"),
    ],
)
def test_structural_problems_raise(mutate, match):
    tasks = load("export_json.json")
    mutate(tasks[1])
    with pytest.raises(ExportFormatError, match=match):
        parse_export(tasks)
    with pytest.raises(ExportFormatError, match="index 0 is a list"):
        parse_export([[1]])
    assert parse_export([]) == []


def _region_of(tasks, t=0, r=0):
    return tasks[t]["annotations"][0]["result"][r]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda reg: reg["value"].update(rotation="thirty"), "region p1: rectangle rotation must be a number"),
        # another control making rectangles beside labelloop's own 'label': which is ours is ambiguous
        (lambda reg: reg.update(from_name="tag"), "controls ['label', 'tag'] all make rectanglelabels regions"),
        (lambda reg: reg.update(from_name="tag", type="ellipselabels"),
         "region p1: from_name 'tag' is not a control of the labelloop labeling config"),
        (lambda reg: reg.update(to_name="img"), "region p1: to_name 'img' is not the image object"),
        (lambda reg: reg.pop("value"), "region p1: missing value"),
        (lambda reg: reg["value"].update(rectanglelabels=["face", "cat"]), "exactly one label"),
        (lambda reg: reg["value"].pop("width"), "numeric x, y, width, height"),
        (lambda reg: reg.update(type="polygonlabels"), "unsupported result type 'polygonlabels' for control 'label'"),
    ],
)
def test_per_record_problems_are_carried_not_raised(mutate, match):
    tasks = load("export_json.json")
    mutate(_region_of(tasks))
    recs = parse_export(tasks)
    assert len(recs) == 3
    assert match in recs[0]["error"]
    assert recs[1]["error"] is None and recs[2]["error"] is None


def test_json_min_problems_are_carried():
    items = load("export_json_min.json")
    items[0]["label"][0]["width"] = "wide"
    del items[1]["updated_at"]
    recs = parse_export(items)
    assert "numeric x, y, width, height" in recs[0]["error"]
    assert "updated_at" in recs[1]["error"]
    assert recs[2]["error"] is None and recs[2]["regions"] == []
    # regions under another project's control name map to ours by their label key, unless that is
    # ambiguous (two controls of one type)
    items = load("export_json_min.json")
    items[0]["tag"] = items[0].pop("label")
    rec = parse_export(items)[0]
    assert rec["error"] is None and {r["mapped_from"] for r in rec["regions"]} == {"tag"}
    items[0]["label"] = [dict(items[0]["tag"][0])]
    assert "controls ['label', 'tag'] all make rectanglelabels regions" in parse_export(items)[0]["error"]
    items = load("export_json_min.json")
    items[0]["tag"] = [{"x": 1, "y": 2, "width": 3, "height": 4, "ellipselabels": ["cat"]}]
    assert "from_name 'tag' is not a control" in parse_export(items)[0]["error"]
    # a rotated rectangle is kept (read as its enclosing box at import)
    items = load("export_json_min.json")
    items[0]["label"][0]["rotation"] = 45
    assert parse_export(items)[0]["error"] is None


def test_rotated_box_imports_as_enclosing_box_and_unknown_label_is_rejected():
    tasks = load("export_json.json")
    _region_of(tasks, 0, 0)["value"]["rotation"] = 90  # face box (176, 55, 274, 180) turned about (176, 55)
    _region_of(tasks, 1, 0)["value"]["rectanglelabels"] = ["dog"]
    images = [_img("astronaut.png", 512, 512), _img("chelsea.png", 451, 300), _img("coffee.png", 600, 400)]
    res = import_review(parse_export(tasks), file_name="bad.json", import_sha256="0" * 64,
                        source="label-studio/project-1", images=images, exported=[], known_review_keys=set(),
                        categories=CATS)
    reasons = {r["item"]: r["reason"] for r in res["rejects"]}
    assert set(reasons) == {"task 2 annotation 2"}
    assert "unknown category 'dog'" in reasons["task 2 annotation 2"]
    assert all(r["file"] == "bad.json" for r in res["rejects"])
    assert sorted(r["task_id"] for r in res["reviews"]) == ["1", "3"]  # the good records still import
    face = next(h for h in res["human_labels"] if h["region_id"] == "p1")
    # 98 x 125 px box rotated 90 degrees clockwise about its top-left corner: x in [176-125, 176], y in [55, 55+98]
    assert close(face["bbox"], (51, 55, 176, 153), tol=1e-6)
    attrs = json.loads(face["attributes"])
    assert attrs["rotation"] == 90 and attrs["rotation_pivot"] == "top-left"
    assert close(attrs["rotated_box_xywh"], (176, 55, 98, 125), tol=1e-6)


def test_polygon_regions_come_back_as_masks():
    """A Label Studio polygon (percent points) becomes a mask rasterized by pycocotools and the
    box of its vertices; the config offers the PolygonLabels control when asked."""
    from labelloop.geometry.masks import decode_rle

    root = ET.fromstring(label_config_xml(CATS, polygons=True))
    poly = root.find("PolygonLabels")
    assert poly.get("name") == "polygon" and [lab.get("value") for lab in poly.findall("Label")] == CATS
    tasks = load("export_json.json")[1:2]  # chelsea, 451 x 300
    pts_px = [(100.0, 50.0), (300.0, 50.0), (300.0, 250.0), (100.0, 250.0)]
    tasks[0]["annotations"][0]["result"] = [{
        "id": "poly1", "from_name": "polygon", "to_name": "image", "type": "polygonlabels",
        "original_width": 451, "original_height": 300, "image_rotation": 0,
        "value": {"points": [[100 * x / 451, 100 * y / 300] for x, y in pts_px], "closed": True,
                  "polygonlabels": ["cat"]}}]
    images = [_img("chelsea.png", 451, 300)]
    res = import_review(parse_export(tasks), file_name="p.json", import_sha256="0" * 64, source="label-studio/project-1",
                        images=images, exported=[], known_review_keys=set(), categories=CATS)
    (h,) = res["human_labels"]
    assert close(h["bbox"], (100, 50, 300, 250), tol=1e-6)
    m = decode_rle(h["mask"])
    assert m.shape == (300, 451) and int(m.sum()) == 200 * 200  # pixel-edge polygon: 200 x 200 pixels
    assert m[50, 100] == 1 and m[249, 299] == 1 and m[250, 300] == 0
