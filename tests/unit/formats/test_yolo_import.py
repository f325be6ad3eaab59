"""YOLO dataset zips imported as reviewed labels (labelloop.formats.yolo.reader): an Ultralytics
dataset zip (data.yaml, labels/<split>/, images/<split>/ of the real photos), Label Studio's YOLO
export zip (classes.txt, notes.json, images/, labels/), segment and pose lines, exact pixel boxes,
per-image rejects (bad class index, malformed line), matching by stem when the zip holds no
images, and a dataset written by Ultralytics' own COCO converter."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from labelloop.formats.records import NormRegion
from labelloop.formats.yolo import YoloArchive, dataset_root, looks_like, norm_to_px
from labelloop.geometry.masks import polygons_to_rle, rle_area
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_file, import_review
from labelloop.review.matching import ImageIndex, MatchReject
from labelloop.review.store import review_store
from support.helpers import skimage_data
from support.review_inbox import CATS, make_template, photo_rows, review_workspace

DATE = (2026, 11, 29, 12, 0, 0)
KP = {"person": ["nose", "left_eye", "right_eye"]}


def zip_bytes(members: dict[str, bytes | str], date=DATE) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=date)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def photo(name: str) -> bytes:
    return (skimage_data() / name).read_bytes()


def ultralytics_zip(labels: dict[str, str], *, names=None, extra: dict | None = None, root: str = "",
                    images: bool = True) -> bytes:
    """An Ultralytics dataset zip: data.yaml (names as an index -> name mapping, the form
    Ultralytics writes), labels/<split>/<stem>.txt and images/<split>/<stem>.png (real photos)."""
    doc = {"path": ".", "train": "images/train", "val": "images/val", "nc": 3,
           "names": names if names is not None else dict(enumerate(CATS))}
    doc.update(extra or {})
    members: dict[str, bytes | str] = {root + "data.yaml": yaml.safe_dump(doc, sort_keys=False)}
    for rel, text in labels.items():  # rel: "train/astronaut"
        members[f"{root}labels/{rel}.txt"] = text
        if images:
            members[f"{root}images/{rel}.png"] = photo(rel.rsplit("/", 1)[-1] + ".png")
    return zip_bytes(members)


def label_studio_yolo_zip(labels: dict[str, str], with_images: set[str]) -> bytes:
    """Label Studio's "YOLO" export zip (label-studio-converter convert_to_yolo): classes.txt (the
    label names sorted, one a line), notes.json (the same with ids and an info block), images/
    (when exported with images) and labels/<image stem>.txt."""
    classes = sorted(CATS)  # cat, face, person
    notes = {"categories": [{"id": i, "name": n} for i, n in enumerate(classes)],
             "info": {"year": 2026, "version": "1.0", "contributor": "Label Studio"}}
    members: dict[str, bytes | str] = {"classes.txt": "\n".join(classes) + "\n", "notes.json": json.dumps(notes)}
    for stem, text in labels.items():
        if stem in with_images:
            members[f"images/{stem}.png"] = photo(stem + ".png")
        members[f"labels/{stem}.txt"] = text
    return zip_bytes(members)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(tmp_path_factory.mktemp("yolo-template") / "ws")


@pytest.fixture()
def ws(template, tmp_path):
    return review_workspace(template, tmp_path / "ws")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def imported(path: Path, keypoints=None, categories=CATS) -> dict:
    parsed = read_review_file(path, keypoints=keypoints)
    res = import_review(parsed["records"], file_name=path.name, import_sha256="0" * 64,
                        source=parsed["default_source"], images=photo_rows(), exported=[], known_review_keys=set(),
                        categories=list(categories), keypoint_schema=keypoints)
    res["parsed"] = parsed
    return res


def by_image(res) -> dict[str, list[dict]]:
    ids = {r["image_id"]: r["source_path"].rsplit("/", 1)[-1] for r in photo_rows()}
    out: dict[str, list[dict]] = {}
    for h in res["human_labels"]:
        out.setdefault(ids[h["image_id"]], []).append(h)
    return out


# --------------------------------------------------------------------------- (a) Ultralytics detect, (e) exact pixels


def test_ultralytics_detect_zip_imports_with_exact_pixel_boxes(ws, tmp_path):
    data = ultralytics_zip({
        "train/astronaut": "1 0.5 0.5 0.25 0.5\n0 0.25 0.75 0.5 0.5\n",  # face, person
        "train/chelsea": "2 0.5 0.5 0.5 0.5\n",  # cat on a 451 x 300 photo
        "val/coffee": "",  # a reviewed negative
    })
    path = write(ws.review_inbox / "ultra.zip", data)
    out = import_file(ws, path)
    assert out.get("error") is None, out
    assert (out["format"], out["source"], out["reviews"], out["labels"], out["rejects"]) == \
        ("yolo", "yolo/ultra", 3, 3, 0)
    store = review_store(ws)
    names = {r["image_id"]: r["source_path"].rsplit("/", 1)[-1] for r in photo_rows()}
    labels: dict[str, list] = {}
    for h in store.human_labels():
        labels.setdefault(names[h["image_id"]], []).append((h["category"], h["bbox"]))
    assert sorted(labels["astronaut.png"]) == [("face", [192.0, 128.0, 320.0, 384.0]),
                                               ("person", [0.0, 256.0, 256.0, 512.0])]
    assert labels["chelsea.png"] == [("cat", [112.75, 75.0, 338.25, 225.0])]
    reviews = {names[r["image_id"]]: r for r in store.reviews()}
    assert reviews["coffee.png"]["n_regions"] == 0 and "coffee.png" not in labels
    r = reviews["astronaut.png"]
    assert (r["tool"], r["task_id"], r["tool_annotation_id"], r["annotator"], r["updated_at"]) == \
        ("yolo", "labels/train/astronaut.txt", "yolo-label", "yolo-import", "2026-11-29T12:00:00+00:00")
    again = import_file(ws, path)  # same versions: nothing new
    assert (again["reviews"], again["skipped"]) == (0, 3)


def test_parsed_records_and_the_format_before_coco(tmp_path):
    path = write(tmp_path / "set.zip", ultralytics_zip({"train/astronaut": "1 0.5 0.5 0.25 0.5\n"},
                                                        names=list(CATS), root="set/"))
    parsed = read_review_file(path)
    assert (parsed["format"], parsed["default_source"]) == ("yolo", "yolo/set")
    (rec,) = parsed["records"]
    assert (rec["image_ref"], rec["allow_name"], rec.get("match_stem", False), rec["format"]) == \
        ("images/train/astronaut.png", True, False, "yolo-detect")
    assert rec["regions"] == [{"kind": "norm", "region_id": None, "category": "face", "box": [0.5, 0.5, 0.25, 0.5],
                               "polygon": None, "keypoints": None, "original_width": None, "original_height": None}]
    assert dataset_root(["set/data.yaml", "set/labels/train/a.txt"]) == "set/"
    assert dataset_root(["data.yaml", "images/a.png"]) is None  # no label file
    assert not looks_like(["annotations.xml"]) and looks_like(["classes.txt", "labels/a.txt"])


def test_norm_to_px_units():
    reg: NormRegion = {"kind": "norm", "region_id": None, "category": "face", "box": [0.5, 0.5, 0.25, 0.5],
                       "polygon": [0.0, 0.0, 1.0, 0.0, 1.0, 0.5], "keypoints": [0.5, 0.25, 2, 0.0, 0.0, 0]}
    px = norm_to_px(reg, 512, 512)
    assert px["bbox"] == [192.0, 128.0, 320.0, 384.0]
    assert px["polygons"] == [[0.0, 0.0, 512.0, 0.0, 512.0, 256.0]]
    assert px["keypoints"] == [256.0, 128.0, 2.0, 0.0, 0.0, 0.0]
    edge = norm_to_px({"kind": "norm", "box": [0.05, 0.5, 0.2, 0.2]}, 600, 400)  # left edge at -0.05: clipped
    assert edge["bbox"] == pytest.approx([0.0, 160.0, 90.0, 240.0])


# --------------------------------------------------------------------------- (b) Label Studio's YOLO export


def test_label_studio_yolo_export_zip(ws):
    # classes.txt sorted: 0 cat, 1 face, 2 person; coffee's image was not exported: matched by stem
    data = label_studio_yolo_zip({"chelsea": "0 0.5 0.5 0.5 0.5\n", "astronaut": "2 0.5 0.5 0.25 0.5\n",
                                  "coffee": "1 0.5 0.5 0.5 0.5\n"}, with_images={"chelsea", "astronaut"})
    path = write(ws.review_inbox / "project-3-at-2026-11-29.zip", data)
    parsed = read_review_file(path)
    refs = {r["task_id"]: (r["image_ref"], r.get("match_stem", False)) for r in parsed["records"]}
    assert refs == {"labels/astronaut.txt": ("images/astronaut.png", False),
                    "labels/chelsea.txt": ("images/chelsea.png", False), "labels/coffee.txt": ("coffee", True)}
    out = import_file(ws, path)
    assert out.get("error") is None and (out["format"], out["reviews"], out["rejects"]) == ("yolo", 3, 0), out
    names = {r["image_id"]: r["source_path"].rsplit("/", 1)[-1] for r in photo_rows()}
    got = {names[h["image_id"]]: (h["category"], h["bbox"]) for h in review_store(ws).human_labels()}
    assert got == {"chelsea.png": ("cat", [112.75, 75.0, 338.25, 225.0]),
                   "astronaut.png": ("person", [192.0, 128.0, 320.0, 384.0]),
                   "coffee.png": ("face", [150.0, 100.0, 450.0, 300.0])}


def test_stem_matching_rule():
    rows = photo_rows()
    index = ImageIndex(rows)
    assert index.match("coffee", by_stem=True)["source_path"] == "photos/coffee.png"
    with pytest.raises(MatchReject, match="unknown image"):
        index.match("coffee")  # a stem is no file name without by_stem
    twin = dict(rows[2], image_id="f" * 64, source_path="other/coffee.jpg", uri="inbox/b1/other/coffee.jpg")
    with pytest.raises(MatchReject, match="ambiguous"):
        ImageIndex([*rows, twin]).match("coffee", by_stem=True)


# --------------------------------------------------------------------------- (c) segment and pose


def test_segment_lines_become_masks(tmp_path):
    tri = "0.25 0.25 0.75 0.25 0.5 0.75"
    data = ultralytics_zip({"train/astronaut": f"1 {tri}\n0 0.5 0.5 0.25 0.5\n", "train/coffee": "2 0 0 1 0 1 1 0 1\n"})
    res = imported(write(tmp_path / "seg.zip", data))
    assert res["parsed"]["records"][0]["format"] == "yolo-segment" and res["rejects"] == []
    got = by_image(res)
    face = next(h for h in got["astronaut.png"] if h["category"] == "face")
    assert face["bbox"] == [128.0, 128.0, 384.0, 384.0]  # the box of the triangle's vertices
    flat = [128.0, 128.0, 384.0, 128.0, 256.0, 384.0]
    assert face["mask"] == polygons_to_rle([flat], 512, 512)
    person = next(h for h in got["astronaut.png"] if h["category"] == "person")
    assert person["bbox"] == [192.0, 128.0, 320.0, 384.0] and person["mask"] is None  # a box line in a segment file
    (cat,) = got["coffee.png"]
    assert cat["bbox"] == [0.0, 0.0, 600.0, 400.0] and rle_area(cat["mask"]) == pytest.approx(600 * 400, rel=0.01)


def test_pose_lines_keypoints_in_the_config_order(tmp_path):
    extra = {"kpt_shape": [3, 3], "kpt_names": {0: ["left_eye", "nose", "right_eye"]}}
    text = "0 0.5 0.5 0.5 0.5 0.4 0.3 2 0.5 0.375 1 0 0 0\n1 0.5 0.25 0.25 0.25 0 0 0 0 0 0 0 0 0\n"
    res = imported(write(tmp_path / "pose.zip", ultralytics_zip({"train/astronaut": text}, extra=extra)),
                   keypoints=KP)
    assert res["rejects"] == [] and res["parsed"]["records"][0]["format"] == "yolo-pose"
    by = {h["category"]: h for h in res["human_labels"]}
    assert by["person"]["bbox"] == [128.0, 128.0, 384.0, 384.0]
    # kpt_names order left_eye, nose, right_eye -> the config's nose, left_eye, right_eye
    assert by["person"]["keypoints"] == [256.0, 192.0, 1.0, 204.8, 153.6, 2.0, 0.0, 0.0, 0.0]
    assert by["face"]["keypoints"] is None  # a class without keypoints: K "0 0 0"
    no_kpt_names = ultralytics_zip({"train/astronaut": "0 0.5 0.5 0.5 0.5 0.5 0.375 2 0 0 0 0 0 0\n"},
                                   extra={"kpt_shape": [3, 3]})
    res = imported(write(tmp_path / "pose2.zip", no_kpt_names), keypoints=KP)
    assert res["human_labels"][0]["keypoints"] == [256.0, 192.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- (d) per-image rejects


def test_bad_class_index_and_malformed_line_reject_that_image_only(ws):
    data = ultralytics_zip({
        "train/astronaut": "1 0.5 0.5 0.25 0.5\n7 0.5 0.5 0.1 0.1\n",  # class 7 of 3
        "train/chelsea": "2 0.5 0.5 0.5\n",  # 4 fields
        "val/coffee": "2 0.5 0.5 0.5 0.5\n",
    })
    out = import_file(ws, write(ws.review_inbox / "bad.zip", data))
    assert (out["reviews"], out["rejects"]) == (1, 2), out
    reasons = sorted(out["reject_reasons"])
    assert reasons[0].startswith("label file labels/train/astronaut.txt: labels/train/astronaut.txt line 2: "
                                 "class index 7 is not one of the 3 classes of data.yaml")
    assert "labels/train/chelsea.txt line 1: expected 'cls cx cy w h'" in reasons[1]
    assert {h["category"] for h in review_store(ws).human_labels()} == {"cat"}  # coffee's


def test_other_line_problems_and_unknown_class_names(tmp_path):
    data = ultralytics_zip({
        "train/astronaut": "1 0.5 0.5 1.5 0.5\n",  # not normalized
        "train/chelsea": "x 0.5 0.5 0.5 0.5\n",
        "val/coffee": "3 0.5 0.5 0.5 0.5\n",  # a class the project does not have
    }, names={0: "person", 1: "face", 2: "cat", 3: "dog"})
    res = imported(write(tmp_path / "lines.zip", data))
    reasons = {r["item"]: r["reason"] for r in res["rejects"]}
    assert "line 1: box value 1.5 outside [0, 1]" in reasons["label file labels/train/astronaut.txt"]
    assert "line 1: not numbers" in reasons["label file labels/train/chelsea.txt"]
    assert "unknown category 'dog'" in reasons["label file labels/val/coffee.txt"]
    assert res["reviews"] == []


def test_whole_file_problems(tmp_path):
    from labelloop.formats.labelstudio import ExportFormatError

    bad_yaml = zip_bytes({"data.yaml": "names: [a, b\n", "labels/a.txt": ""})
    with pytest.raises(ExportFormatError, match="data.yaml is not YAML"):
        read_review_file(write(tmp_path / "y.zip", bad_yaml))
    no_names = zip_bytes({"data.yaml": "train: images/train\n", "labels/a.txt": ""})
    with pytest.raises(ExportFormatError, match="has no 'names'"):
        read_review_file(write(tmp_path / "n.zip", no_names))
    neither = zip_bytes({"readme.txt": "hello"})
    with pytest.raises(ExportFormatError, match="YOLO dataset"):
        read_review_file(write(tmp_path / "x.zip", neither))
    big = zip_bytes({"classes.txt": "cat\n", "labels/a.txt": "0 0.5 0.5 0.5 0.5\n" * 50,
                     "labels/b.txt": "0 0.5 0.5 0.5 0.5\n" * 50})
    with pytest.raises(ExportFormatError, match="more than the"):
        read_review_file(write(tmp_path / "big.zip", big), max_bytes=1500)  # each alone fits, both do not


def test_archive_type_is_what_parse_takes():
    from labelloop.formats.yolo import parse

    arch = YoloArchive(root="", texts={"classes.txt": b"cat\n", "labels/a.txt": b""}, times={"labels/a.txt": DATE})
    (rec,) = parse(arch, where="x.zip", fallback_time="2026-01-01T00:00:00+00:00")["records"]
    assert (rec["image_ref"], rec["updated_at"], rec["regions"]) == ("a", "2026-11-29T12:00:00+00:00", [])
    old = YoloArchive(root="", texts=arch.texts, times={"labels/a.txt": (1980, 1, 1, 0, 0, 0)})
    assert parse(old, where="x.zip", fallback_time="2026-01-01T00:00:00+00:00")["records"][0]["updated_at"] == \
        "2026-01-01T00:00:00+00:00"  # the zip's "no date": the file's time


# --------------------------------------------------------------------------- Ultralytics' own converter


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics is not installed")
def test_dataset_written_by_ultralytics_convert_coco(ws, tmp_path):
    """COCO annotations -> ultralytics.data.converter.convert_coco (run in a child process: importing
    ultralytics patches PIL and writes settings) -> zipped with data.yaml and the images -> imported."""
    ann_dir = tmp_path / "annotations"
    ann_dir.mkdir()
    coco = {"images": [{"id": 1, "file_name": "astronaut.png", "width": 512, "height": 512},
                       {"id": 2, "file_name": "chelsea.png", "width": 451, "height": 300}],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CATS)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [192, 128, 128, 256], "iscrowd": 0,
                             "area": 128 * 256},
                            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [112.75, 75, 225.5, 150],
                             "iscrowd": 0, "area": 225.5 * 150}]}
    (ann_dir / "instances_train.json").write_text(json.dumps(coco))
    out_dir = tmp_path / "converted"
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "ultralytics-settings"), YOLO_OFFLINE="true",
               YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false")
    code = ("import sys; from ultralytics.data.converter import convert_coco; "
            "convert_coco(sys.argv[1], sys.argv[2], cls91to80=False)")
    subprocess.run([sys.executable, "-c", code, str(ann_dir), str(out_dir)], check=True, env=env, timeout=300,
                   capture_output=True)
    label_files = sorted((out_dir / "labels" / "train").glob("*.txt"))
    assert [p.name for p in label_files] == ["astronaut.txt", "chelsea.txt"]
    members: dict[str, bytes | str] = {"data.yaml": yaml.safe_dump({"train": "images/train",
                                                                    "names": dict(enumerate(CATS))})}
    for p in label_files:
        members[f"labels/train/{p.name}"] = p.read_bytes()
        members[f"images/train/{p.stem}.png"] = photo(p.stem + ".png")
    out = import_file(ws, write(ws.review_inbox / "converted.zip", zip_bytes(members)))
    assert out.get("error") is None and (out["reviews"], out["rejects"]) == (2, 0), out
    names = {r["image_id"]: r["source_path"].rsplit("/", 1)[-1] for r in photo_rows()}
    got = {names[h["image_id"]]: (h["category"], h["bbox"]) for h in review_store(ws).human_labels()}
    assert got["astronaut.png"][0] == "face" and got["chelsea.png"][0] == "cat"
    # convert_coco writes %g (6 significant digits): within a thousandth of a pixel here
    assert np.allclose(got["astronaut.png"][1], [192, 128, 320, 384], atol=1e-3)
    assert np.allclose(got["chelsea.png"][1], [112.75, 75, 338.25, 225], atol=1e-3)


def test_gold_registration_reads_yolo(ws, tmp_path):
    from labelloop.review.gold import read_gold_file

    data = label_studio_yolo_zip({"coffee": "1 0.5 0.5 0.5 0.5\n"}, with_images=set())
    gold = read_gold_file(write(tmp_path / "gold.zip", data), "g1", photo_rows(), list(CATS))
    assert gold["format"] == "yolo" and gold["rejects"] == []
    assert [(r["category"], r["bbox"]) for r in gold["labels"]] == [("face", [150.0, 100.0, 450.0, 300.0])]
    assert hashlib.sha256(photo("coffee.png")).hexdigest() == gold["images"][0]["image_id"]


def test_hostile_data_yaml_is_refused_quickly_and_by_name(tmp_path):
    """Found by trying to break it: nested YAML aliases ("billion laughs", a 1 KB zip) took minutes
    of CPU in an error message; a null or non-ASCII-digit class index crashed with TypeError."""
    import time

    from labelloop.formats.labelstudio import ExportFormatError

    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    bomb = zip_bytes({"data.yaml": "\n".join(levels) + "\nnames: *i\n", "labels/a.txt": ""})
    t0 = time.perf_counter()
    with pytest.raises(ExportFormatError, match=r"bomb\.zip: .*data\.yaml is not YAML .*aliases"):
        read_review_file(write(tmp_path / "bomb.zip", bomb))
    assert time.perf_counter() - t0 < 5
    for kpt_names, names in (("{null: [nose]}", "{0: person}"), ("{0: [nose]}", "{'²': person}")):
        doc = f"names: {names}\nkpt_shape: [1, 3]\nkpt_names: {kpt_names}\n"
        with pytest.raises(ExportFormatError, match=r"odd\.zip: .*(kpt_names must map|'names' entry)"):
            read_review_file(write(tmp_path / "odd.zip", zip_bytes({"data.yaml": doc, "labels/a.txt": ""})))


def test_one_image_labelled_in_two_splits_is_rejected_both_times(tmp_path):
    """Found by trying to break it: labels/train/astronaut.txt and labels/val/astronaut.txt gave
    two reviews of one image with the same time, so which held was chance. Both are rejected,
    naming each other; the other images import."""
    data = ultralytics_zip({"train/astronaut": "0 0.5 0.5 0.2 0.2\n", "val/astronaut": "1 0.5 0.5 0.4 0.4\n",
                            "train/coffee": "2 0.5 0.5 0.5 0.5\n"})
    res = imported(write(tmp_path / "twice.zip", data))
    assert sorted(by_image(res)) == ["coffee.png"] and len(res["reviews"]) == 1
    reasons = sorted(r["reason"] for r in res["rejects"])
    assert len(reasons) == 2 and all("are both labels of image" in r and "ambiguous" in r for r in reasons)


def test_a_class_name_in_another_unicode_form_is_the_category(tmp_path):
    import unicodedata

    cats = ["pérson", "face", "cat"]  # NFC in labelloop.yaml
    nfd = unicodedata.normalize("NFD", "pérson")
    assert nfd != cats[0]
    data = ultralytics_zip({"train/astronaut": "0 0.5 0.5 0.2 0.2\n"}, names={0: nfd, 1: "face", 2: "cat"})
    res = imported(write(tmp_path / "nfd.zip", data), categories=cats)
    assert res["rejects"] == [] and [h["category"] for h in res["human_labels"]] == ["pérson"]
