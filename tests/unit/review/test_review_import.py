"""Review import and store on the real Label Studio 1.23.2 round trip (NOTES.md of the fixtures)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
import skimage

from labelloop.formats.labelstudio import build_import_tasks, parse, parse_export, read_export
from labelloop.formats.records import default_source
from labelloop.geometry.boxes import iou, xyxy_to_ls
from labelloop.review.files import read_review_file
from labelloop.review.importer import human_label_id, import_review, register_import_tasks, review_id
from labelloop.review.store import ReviewStore, make_import_id
from labelloop.tables.schemas import HUMAN_LABELS, REJECTS, REVIEWS
from support.helpers import ls_fixtures

FX = ls_fixtures()
SK = Path(skimage.__file__).parent / "data"
CATS = ["person", "face", "cat"]
SIZES = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
SRC = "label-studio/project-1"


def sha(name: str) -> str:
    return hashlib.sha256((SK / name).read_bytes()).hexdigest()


def image_row(source_path, image_id, w, h, **kw):
    row = {name: None for name in ("batch", "origin_path", "ingest_seq", "format", "mode", "bytes",
                                   "exif_orientation", "phash", "near_duplicate_of", "reject_reason")}
    row |= {"image_id": image_id, "uri": f"inbox/batch1/photos/{source_path}", "source_path": source_path,
            "width": w, "height": h, "status": "ok", "duplicate_of": None}
    return row | kw


@pytest.fixture(scope="module")
def images():
    return [image_row(n, sha(n), w, h) for n, (w, h) in SIZES.items()]


@pytest.fixture(scope="module")
def exported(images):
    rows, rejects = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC,
                                          images=images)
    assert rejects == []
    return rows


def ids(images):
    return {r["source_path"]: r["image_id"] for r in images}


def do_import(records, images, exported, store=None, source=SRC, file_name="export_json.json", **kw):
    res = import_review(records, file_name=file_name, import_sha256=hashlib.sha256(file_name.encode()).hexdigest(),
                        source=source, images=images, exported=exported,
                        known_review_keys=store.known_review_keys() if store else set(), categories=CATS, **kw)
    if store is not None:
        store.commit_import(make_import_id(source, hashlib.sha256(repr(records).encode()).hexdigest()), res)
    return res


def tasks():
    return json.loads((FX / "export_json.json").read_text(encoding="utf-8"))


def close(a, b, tol=1e-6):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def current(store):
    return sorted((h["image_id"], h["category"], tuple(round(v, 6) for v in h["bbox"]), h["action"])
                  for h in store.current_human_labels())


# ---------------------------------------------------------------------------- registration


def test_register_import_tasks_gives_exported_predictions(images, exported):
    by = {r["region_id"]: r for r in exported}
    assert sorted(by) == ["p1", "p2", "p3"]
    astro = ids(images)["astronaut.png"]
    assert by["p1"]["prediction_id"] == f"ls-{SRC}:p1:{astro[:12]}"
    assert close(by["p1"]["bbox"], (180, 60, 270, 175)) and close(by["p2"]["bbox"], (30, 40, 360, 512))
    assert close(by["p3"]["bbox"], (90, 20, 380, 290)) and by["p3"]["category"] == "face"
    assert {r["model_version"] for r in exported} == {"opencv-haar@abc123"}
    assert by["p2"]["score"] == 0.41 and by["p2"]["source"] == SRC


def test_register_rejects_unknown_and_mismatched_tasks(images):
    raw = json.loads((FX / "import_tasks.json").read_text())
    raw[0]["data"]["image"] = "/data/local-files/?d=photos/missing.png"
    raw[1]["predictions"][0]["result"][0]["original_width"] = 900
    rows, rejects = register_import_tasks(raw, source=SRC, images=images, file_name="tasks.json")
    assert rows == []  # coffee has no regions
    assert [r["item"] for r in rejects] == ["import task 0", "import task 1"]
    assert "unknown image" in rejects[0]["reason"] and "original_width 900" in rejects[1]["reason"]


# ---------------------------------------------------------------------------- the fixture round trip


def test_json_export_reproduces_the_reviewers_actions(images, exported):
    res = do_import(read_export(FX / "export_json.json"), images, exported)
    assert res["rejects"] == [] and res["skipped"] == 0
    i = ids(images)
    reviews = {r["image_id"]: r for r in res["reviews"]}
    assert len(reviews) == 3 and all(r["annotator"] == "ls-user-1" for r in res["reviews"])
    labels = {}
    for h in res["human_labels"]:
        labels.setdefault(h["image_id"], []).append(h)
    face, person = sorted(labels[i["astronaut.png"]], key=lambda h: h["category"])
    assert (face["category"], face["action"]) == ("face", "corrected")
    assert close(face["bbox"], (176, 55, 274, 180))
    assert (person["category"], person["action"]) == ("person", "corrected")
    assert close(person["bbox"], (20, 15, 365, 512))
    assert round(iou(person["bbox"], (30, 40, 360, 512)), 3) == 0.908  # < 0.95 -> corrected
    assert person["source_prediction_id"] == f"ls-{SRC}:p2:{i['astronaut.png'][:12]}"
    (cat,) = labels[i["chelsea.png"]]
    assert (cat["category"], cat["action"], cat["region_id"]) == ("cat", "corrected", "p3")
    assert close(cat["bbox"], (0, 0, 451, 300))
    assert reviews[i["coffee.png"]]["n_regions"] == 0 and i["coffee.png"] not in labels
    # ids and columns
    r1 = reviews[i["astronaut.png"]]
    assert r1["review_id"] == review_id(SRC, "1", "1", "2026-11-29T08:15:58.515742Z")
    assert face["annotation_id"] == human_label_id(SRC, "1", "1", "p1")
    assert face["reviewed_at"] == r1["updated_at"] and face["tool"] == "label-studio"
    assert set(r1) == set(REVIEWS.names) and set(face) == set(HUMAN_LABELS.names)


def test_reimport_and_json_min_of_the_same_work_add_nothing(tmp_path, images, exported):
    store = ReviewStore(tmp_path / "human_labels")
    first = do_import(read_export(FX / "export_json.json"), images, exported, store)
    assert len(first["reviews"]) == 3
    again = do_import(read_export(FX / "export_json.json"), images, exported, store)
    assert again["skipped"] == 3 and again["reviews"] == [] and again["human_labels"] == []
    mini = read_export(FX / "export_json_min.json")
    assert read_review_file(FX / "export_json_min.json")["default_source"] != SRC  # so the source is passed explicitly
    res = do_import(mini, images, exported, store, file_name="export_json_min.json")
    assert res["skipped"] == 3 and res["reviews"] == []
    assert len(store.reviews()) == 3 and len(store.import_ids()) == 1


def test_json_min_gives_the_same_current_labels(tmp_path, images, exported):
    a, b = ReviewStore(tmp_path / "a"), ReviewStore(tmp_path / "b")
    do_import(read_export(FX / "export_json.json"), images, exported, a)
    res = do_import(read_export(FX / "export_json_min.json"), images, exported, b, file_name="min.json")
    assert res["rejects"] == []
    assert current(a) == current(b)  # matched by IoU: no region ids in JSON-MIN
    assert len(current(a)) == 3
    assert set(a.latest_reviews()) == set(b.latest_reviews()) == set(ids(images).values())


def test_modified_reexport_is_skipped(tmp_path, images, exported):
    store = ReviewStore(tmp_path / "s")
    do_import(read_export(FX / "export_json.json"), images, exported, store)
    t = tasks()
    for task in t:
        task["updated_at"] = "2027-01-01T00:00:00.000000Z"
        task["total_annotations"] = 5
        task["annotations"][0]["prediction"]["created_ago"] = "3 days"
    path = tmp_path / "reexport.json"
    path.write_text(json.dumps(t, indent=2), encoding="utf-8")
    res = do_import(read_export(path), images, exported, store, file_name="reexport.json")
    assert res["skipped"] == 3 and res["reviews"] == []


def _updated_face(t):
    ann = t[0]["annotations"][0]
    ann["updated_at"] = "2026-11-30T10:00:00.000000Z"
    ann["result"][0]["value"].update(xyxy_to_ls((100, 100, 200, 220), 512, 512))
    return t


def test_updated_annotation_supersedes_in_any_order(tmp_path, images, exported):
    v1, v2 = tasks(), _updated_face(tasks())
    a, b = ReviewStore(tmp_path / "a"), ReviewStore(tmp_path / "b")
    for store, order in ((a, (v1, v2)), (b, (v2, v1))):
        for version in order:
            res = do_import(parse_export(version), images, exported, store)
            assert res["rejects"] == []
    assert current(a) == current(b)
    astro = ids(images)["astronaut.png"]
    assert a.latest_reviews()[astro]["updated_at"] == "2026-11-30T10:00:00.000000Z"
    faces = [h for h in a.current_human_labels() if h["image_id"] == astro and h["category"] == "face"]
    assert len(faces) == 1 and close(faces[0]["bbox"], (100, 100, 200, 220))
    # the annotation keeps its label ids across versions
    assert faces[0]["annotation_id"] == human_label_id(SRC, "1", "1", "p1")
    assert len(a.reviews()) == 4 and len(a.human_labels()) == 5  # v1: 3 rows, v2 of astronaut: 2


def test_deleted_prediction_gives_a_marker(images, exported):
    t = tasks()
    t[0]["annotations"][0]["result"] = t[0]["annotations"][0]["result"][:1]  # p2 removed
    res = do_import(parse_export(t), images, exported)
    astro = ids(images)["astronaut.png"]
    rows = {h["action"]: h for h in res["human_labels"] if h["image_id"] == astro}
    assert set(rows) == {"corrected", "deleted"}
    d = rows["deleted"]
    assert (d["category"], d["region_id"]) == ("person", "p2")
    assert d["source_prediction_id"] == f"ls-{SRC}:p2:{astro[:12]}" and close(d["bbox"], (30, 40, 360, 512))
    assert d["annotation_id"] == human_label_id(SRC, "1", "1", "del:" + d["source_prediction_id"])
    assert [r["n_regions"] for r in res["reviews"] if r["image_id"] == astro] == [1]


def test_added_region_and_accepted_box(images, exported):
    t = tasks()
    result = t[1]["annotations"][0]["result"]
    result[0]["value"].update(xyxy_to_ls((90, 20, 380, 290), 451, 300), rectanglelabels=["face"])  # kept as is
    extra = copy.deepcopy(result[0])
    extra["id"] = "hand-drawn"
    extra["value"].update(xyxy_to_ls((10, 10, 60, 50), 451, 300), rectanglelabels=["cat"])
    result.append(extra)
    res = do_import(parse_export(t), images, exported)
    rows = {h["region_id"]: h for h in res["human_labels"] if h["image_id"] == ids(images)["chelsea.png"]}
    assert rows["p3"]["action"] == "accepted" and rows["hand-drawn"]["action"] == "added"
    assert rows["hand-drawn"]["source_prediction_id"] is None


def test_empty_result_is_a_negative_with_deletion_markers(images, exported):
    t = tasks()
    t[1]["annotations"][0]["result"] = []
    res = do_import(parse_export(t), images, exported)
    chelsea = ids(images)["chelsea.png"]
    assert [r["n_regions"] for r in res["reviews"] if r["image_id"] == chelsea] == [0]
    assert [h["action"] for h in res["human_labels"] if h["image_id"] == chelsea] == ["deleted"]


def test_parent_prediction_is_used_when_nothing_was_registered(images):
    res = do_import(read_export(FX / "export_json.json"), images, exported=[])
    rows = {h["region_id"]: h for h in res["human_labels"]}
    assert rows["p2"]["action"] == "corrected" and rows["p2"]["source_prediction_id"] == f"ls-{SRC}:1:p2"
    assert rows["p3"]["source_prediction_id"] == f"ls-{SRC}:2:p3"


def test_our_own_export_round_trip_links_by_image_id_and_region_id(images):
    astro = next(r for r in images if r["source_path"] == "astronaut.png")
    pred = {"prediction_id": "pr-face", "image_id": astro["image_id"], "category": "face",
            "bbox": [180.0, 60.0, 270.0, 175.0], "score": 0.62}
    sent, exp = build_import_tasks([astro], [pred], model_version="m@1", batch="batch1")
    renamed = dict(sent[0]["data"], image="/data/local-files/?d=somewhere/else.png")  # only image_id matches
    export = [{"id": 41, "data": renamed, "project": 9, "annotations": [
        {"id": 77, "completed_by": {"id": 2, "email": "r@example.org"}, "was_cancelled": False,
         "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
         "result": sent[0]["predictions"][0]["result"]}]}]
    recs = parse_export(export)
    container = parse(export, where="x.json", fallback_time="2026-12-01T00:00:00Z")["container"]
    res = do_import(recs, images, exp, source=default_source("label-studio", "x.json", container))
    (h,) = res["human_labels"]
    assert (h["action"], h["source_prediction_id"], h["source"]) == ("accepted", "pr-face", "label-studio/project-9")
    assert h["annotator"] == "ls-user-" + hashlib.sha256(b"r@example.org").hexdigest()[:12]


def test_cancelled_annotation_keeps_the_image_in_review(tmp_path, images, exported):
    store = ReviewStore(tmp_path / "s")
    t = tasks()
    t[2]["annotations"][0]["was_cancelled"] = True
    res = do_import(parse_export(t), images, exported, store)
    (skip,) = [r for r in res["reviews"] if r["was_cancelled"]]
    assert skip["image_id"] == ids(images)["coffee.png"]
    assert ids(images)["coffee.png"] not in store.latest_reviews()
    # a later cancelled version of an annotation withdraws it
    t2 = tasks()
    t2[0]["annotations"][0].update(was_cancelled=True, updated_at="2026-12-24T00:00:00Z")
    do_import(parse_export(t2), images, exported, store)
    assert ids(images)["astronaut.png"] not in store.latest_reviews()
    assert {h["image_id"] for h in store.current_human_labels()} == {ids(images)["chelsea.png"]}


def test_bad_records_are_rejected_alone(images, exported):
    extra = [
        image_row("a/x.png", "a" * 64, 100, 100), image_row("b/x.png", "b" * 64, 100, 100),
        image_row("one/y.png", "c" * 64, 100, 100),
        image_row("two/y.png", "c" * 64, 100, 100, duplicate_of="one/y.png"),
    ]
    t = tasks()

    def clone(task_i, task_id, image=None, mutate=None):
        c = copy.deepcopy(t[task_i])
        c["id"] = task_id
        c["annotations"][0]["id"] = 1000 + task_id
        if image:
            c["data"]["image"] = image
        if mutate:
            mutate(c["annotations"][0]["result"])
        return c

    def set_value(**kw):
        return lambda result: result[0]["value"].update(**kw)

    bad = [
        clone(2, 11, "/data/local-files/?d=photos/nope.png"),
        clone(2, 12, "/data/local-files/?d=x.png"),
        clone(0, 13, mutate=lambda result: [r.update(original_width=1024) for r in result]),
        clone(0, 14, mutate=set_value(rectanglelabels=["dog"])),
        clone(0, 15, mutate=set_value(rotation="ninety")),
        clone(0, 16, mutate=set_value(x=90.0)),  # 90% + 19% of the width: outside the image
        clone(2, 17, "y.png"),  # byte-identical duplicates are one image: not ambiguous
    ]
    res = do_import(parse_export(t + bad), images + extra, exported, file_name="mixed.json")
    reasons = {r["item"]: r["reason"] for r in res["rejects"]}
    assert set(reasons) == {f"task {i} annotation {1000 + i}" for i in range(11, 17)}
    assert "unknown image '/data/local-files/?d=photos/nope.png'" in reasons["task 11 annotation 1011"]
    amb = reasons["task 12 annotation 1012"]
    assert "ambiguous image reference" in amb and "matches 2 images" in amb and "a/x.png" in amb and "b/x.png" in amb
    assert "original_width 1024 disagrees with the width 512" in reasons["task 13 annotation 1013"]
    assert "unknown category 'dog'" in reasons["task 14 annotation 1014"]
    assert "rotation must be a number" in reasons["task 15 annotation 1015"]
    assert "outside the 512x512 image" in reasons["task 16 annotation 1016"]
    assert all(set(r) == set(REJECTS.names) and r["file"] == "mixed.json" for r in res["rejects"])
    assert sorted(r["task_id"] for r in res["reviews"]) == ["1", "17", "2", "3"]  # the good ones import
    assert {h["review_id"] for h in res["human_labels"]} <= {r["review_id"] for r in res["reviews"]}


def test_height_mismatch_is_named(images, exported):
    t = tasks()[1:2]
    t[0]["annotations"][0]["result"][0]["original_height"] = 320
    (rej,) = do_import(parse_export(t), images, exported)["rejects"]
    assert "original_height 320 disagrees with the height 300" in rej["reason"]


# ---------------------------------------------------------------------------- the store


def test_crash_mid_commit_leaves_nothing_and_next_commit_succeeds(tmp_path, images, exported, monkeypatch):
    store = ReviewStore(tmp_path / "human_labels")
    res = do_import(read_export(FX / "export_json.json"), images, exported)

    def boom(*a, **k):
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(os, "rename", boom)
        with pytest.raises(OSError, match="simulated crash"):
            store.commit_import("imp-1", res)
    assert store.import_ids() == [] and store.reviews() == [] and store.known_review_keys() == set()
    # a process killed after writing its temp folder leaves one behind: ignored, then cleaned
    leftover = store.imports_dir / ".tmp-killed"
    leftover.mkdir(parents=True)
    from labelloop.tables.parquet import write_rows

    write_rows(res["reviews"], REVIEWS, leftover / "reviews.parquet")
    assert store.reviews() == [] and store.latest_reviews() == {}
    path = store.commit_import("imp-1", res)
    assert path == store.imports_dir / "imp-1" and not leftover.exists()
    assert len(store.reviews()) == 3 and len(store.human_labels()) == 3
    assert store.commit_import("imp-1", {"reviews": [], "human_labels": [], "rejects": [{"file": "f", "item": "i",
                                                                                          "reason": "r"}]}) == path
    assert store.rejects() == []  # an existing import is never rewritten


def test_two_sources_never_overwrite_each_other(tmp_path, images, exported):
    store = ReviewStore(tmp_path / "s")
    recs = read_export(FX / "export_json.json")
    for source in ("label-studio/project-1", "label-studio/team-b"):
        res = do_import(recs, images, exported, source=source)
        store.commit_import(make_import_id(source, "f" * 64), res)
    assert make_import_id("label-studio/project-1", "f" * 64) != make_import_id("label-studio/team-b", "f" * 64)
    assert len(store.import_ids()) == 2 and len(store.reviews()) == 6
    assert {r["source"] for r in store.reviews()} == {"label-studio/project-1", "label-studio/team-b"}
    assert len(store.latest_reviews()) == 3  # one current review per image


def test_nothing_written_without_reviews_rejects_alone_are_recorded(tmp_path):
    store = ReviewStore(tmp_path / "s")
    assert store.commit_import("empty", {"reviews": [], "human_labels": [], "rejects": [], "skipped": 3}) is None
    assert store.import_ids() == []
    rej = {"reviews": [], "human_labels": [], "rejects": [{"file": "f.json", "item": "task 1", "reason": "bad"}]}
    assert store.commit_import("only-rejects", rej) is not None
    assert store.rejects() == rej["rejects"] and store.reviews() == [] and store.latest_reviews() == {}
    with pytest.raises(ValueError, match="invalid import id"):
        store.commit_import("../escape", rej)


def test_latest_review_across_annotators_is_the_most_recent(tmp_path, images, exported):
    store = ReviewStore(tmp_path / "s")
    t = tasks()[:1]
    second = copy.deepcopy(t[0]["annotations"][0])
    second.update(id=50, completed_by=2, updated_at="2026-11-29T09:00:00Z", result=second["result"][:1])
    t[0]["annotations"].append(second)
    do_import(parse_export(t), images, exported, store)
    latest = store.latest_reviews()[ids(images)["astronaut.png"]]
    assert (latest["tool_annotation_id"], latest["annotator"]) == ("50", "ls-user-2")
    assert sorted(h["action"] for h in store.current_human_labels()) == ["corrected", "deleted"]


def test_predictions_of_another_export_of_the_image_are_not_deleted(images, exported):
    astro = ids(images)["astronaut.png"]
    older = {"source": "labelloop/batch0", "image_id": astro, "region_id": "old-1", "prediction_id": "old-1",
             "category": "face", "bbox": [300.0, 300.0, 350.0, 350.0], "score": 0.5, "model_version": "m@0"}
    res = do_import(read_export(FX / "export_json.json"), images, exported + [older])
    rows = [h for h in res["human_labels"] if h["image_id"] == astro]
    assert sorted(h["action"] for h in rows) == ["corrected", "corrected"]  # linked to p1/p2 of SRC only
