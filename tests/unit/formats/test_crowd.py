"""Crowd regions (COCO ``iscrowd: 1``, CVAT's ``is_crowd`` attribute) from a review import through
human_labels -> resolve -> labels -> the release formats: COCO writes them as RLE with iscrowd 1
(one object with holes: RLE, iscrowd 0; other objects: polygons, one per part), YOLO leaves them
out as Ultralytics' own COCO converter does. Also: old review tables without the new columns."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from labelloop.formats.coco.reader import parse_coco_review
from labelloop.formats.coco.writer import build_coco, dumps_coco, uncompressed_rle
from labelloop.formats.cvat.reader import parse_cvat
from labelloop.formats.yolo.writer import label_text, parse_yolo_lines
from labelloop.release.build import ReleaseInputs
from labelloop.release.lineage import release_lineage_rows, trace_problems
from labelloop.review.importer import import_review
from labelloop.review.resolve import resolve_labels
from labelloop.review.store import ReviewStore, make_import_id
from labelloop.tables.schemas import HUMAN_LABELS, REVIEWS
from labelloop.workspace.config import ProjectConfig

SK = Path(skimage.__file__).parent / "data"
CATS = ["person", "face", "cat"]
RUN = "3f0c9a52-1b7e-4d1f-9a0e-5c2d7e8f9a10"  # a Dagster run id (uuid4 shape)
CFG = ProjectConfig.model_validate({"categories": [
    {"name": "person", "detector": "opencv-hog-person"},
    {"name": "face", "detector": "opencv-haar-frontalface_default"},
    {"name": "cat", "detector": "opencv-haar-frontalcatface"}]})


def image_row(name: str) -> dict:
    p = SK / name
    with Image.open(p) as im:
        w, h = im.size
    return {"image_id": hashlib.sha256(p.read_bytes()).hexdigest(), "uri": f"inbox/b1/photos/{name}",
            "source_path": f"photos/{name}", "width": w, "height": h, "status": "ok", "duplicate_of": None}


@pytest.fixture(scope="module")
def images():
    return [image_row("astronaut.png"), image_row("coffee.png")]


def _masks():
    h, w = 512, 512
    crowd = np.zeros((h, w), np.uint8)
    crowd[420:500, 10:300] = 1  # a crowd of people at the bottom
    ring = np.zeros((h, w), np.uint8)
    ring[50:250, 300:480] = 1
    ring[100:200, 350:430] = 0  # one object with a hole
    parts = np.zeros((h, w), np.uint8)
    parts[300:340, 20:80] = 1
    parts[300:360, 200:260] = 1  # one object in two parts
    return {"crowd": crowd, "ring": ring, "parts": parts}


def _xywh(m) -> list[float]:
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def coco_review(images, masks) -> dict:
    """A COCO review file as another tool writes it: crowd with uncompressed RLE, a holed object
    with compressed RLE, a two-part object as polygons, a box; coffee listed crowd-only."""
    astro, coffee = images
    ring = mask_utils.encode(np.asfortranarray(masks["ring"]))
    ring["counts"] = ring["counts"].decode()
    polys = [[20, 300, 80, 300, 80, 340, 20, 340], [200, 300, 260, 300, 260, 360, 200, 360]]
    coffee_crowd = np.zeros((coffee["height"], coffee["width"]), np.uint8)
    coffee_crowd[10:100, 10:200] = 1
    return {
        "info": {"date_created": "2026-11-28T10:00:00Z", "contributor": "reviewer@example.org"},
        "categories": [{"id": i, "name": n} for i, n in enumerate(CATS, start=1)],
        "images": [{"id": 1, "file_name": astro["uri"], "width": 512, "height": 512, "sha256": astro["image_id"]},
                   {"id": 2, "file_name": coffee["uri"], "width": coffee["width"], "height": coffee["height"],
                    "sha256": coffee["image_id"]}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": _xywh(masks["crowd"]),
             "segmentation": uncompressed_rle(masks["crowd"])},
            {"id": 12, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": _xywh(masks["ring"]), "segmentation": ring},
            {"id": 13, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": _xywh(masks["parts"]),
             "segmentation": polys},
            {"id": 14, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [180.0, 60.0, 90.0, 115.0]},
            {"id": 21, "image_id": 2, "category_id": 1, "iscrowd": 1, "bbox": _xywh(coffee_crowd),
             "segmentation": uncompressed_rle(coffee_crowd)},
        ],
    }


def test_coco_crowd_region_travels_to_coco_rle_and_is_left_out_of_yolo(images, tmp_path):
    masks = _masks()
    astro, coffee = images
    obj = coco_review(images, masks)
    # the reviewer saw a model "person" over the crowd: the crowd region does not correct it
    shown = [{"source": "coco/review", "image_id": astro["image_id"], "region_id": "pr-crowd",
              "prediction_id": "pr-crowd", "category": "person", "bbox": [10.0, 420.0, 300.0, 500.0], "score": 0.6}]
    recs = parse_coco_review(obj, where="review.json", fallback_time="2026-01-01T00:00:00+00:00")
    digest = hashlib.sha256(json.dumps(obj).encode()).hexdigest()
    res = import_review(recs, file_name="review.json", import_sha256=digest, source="coco/review", images=images,
                        exported=shown, known_review_keys=set(), categories=CATS, import_run_id=RUN)
    assert res["rejects"] == [] and len(res["reviews"]) == 2
    store = ReviewStore(tmp_path / "human_labels")
    store.commit_import(make_import_id("coco/review", digest), res)
    hl = {h["region_id"]: h for h in store.human_labels()}
    assert hl["11"]["iscrowd"] is True and hl["21"]["iscrowd"] is True
    assert [hl[k]["iscrowd"] for k in ("12", "13", "14")] == [False, False, False]
    assert hl["11"]["action"] == "added" and hl["11"]["source_prediction_id"] is None
    assert hl["pr-crowd"]["action"] == "deleted"  # the model's single person is not what was there
    assert {h["import_run_id"] for h in store.human_labels()} == {RUN}
    assert {r["import_run_id"] for r in store.reviews()} == {RUN}

    # human_labels -> resolve -> labels: the flag is kept, only on the crowd regions
    queue = [{"image_id": i["image_id"], "route": "human_review", "reason": "r", "policy_id": CFG.policy_id()}
             for i in images]
    labels, resolved = resolve_labels(images, queue, [], store.latest_reviews(), store.current_human_labels(), CFG)
    assert len(labels) == 5 and {r["resolution"] for r in resolved} == {"reviewed"}
    crowd_ids = {lab["label_id"] for lab in labels if lab.get("iscrowd")}
    assert len(crowd_ids) == 2

    # labels -> COCO: crowd = uncompressed RLE iscrowd 1; hole = compressed RLE iscrowd 0; parts = 2 polygons
    rel = [dict(i, file_name=f"images/train/{i['image_id'][:16]}.png") for i in images]
    path = tmp_path / "instances_train.json"
    path.write_bytes(dumps_coco(build_coco(rel, labels, CATS)))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    anns = gt.loadAnns(gt.getAnnIds())
    by_area = {}
    for a in (a for a in anns if a["segmentation"]):
        m = gt.annToMask(a)
        for name, ref in masks.items():
            if m.shape == ref.shape and np.array_equal(m, ref):
                by_area[name] = a
    crowd, ring, parts = by_area["crowd"], by_area["ring"], by_area["parts"]
    assert crowd["iscrowd"] == 1 and isinstance(crowd["segmentation"]["counts"], list)
    assert crowd["label_id"] in crowd_ids and crowd["area"] == float(masks["crowd"].sum())
    assert ring["iscrowd"] == 0 and isinstance(ring["segmentation"]["counts"], str)
    assert parts["iscrowd"] == 0 and isinstance(parts["segmentation"], list) and len(parts["segmentation"]) == 2
    face = next(a for a in anns if a["category_id"] == 2)
    assert face["iscrowd"] == 0 and face["segmentation"] == []
    assert sum(a["iscrowd"] for a in anns) == 2

    # YOLO: no crowd concept; crowd regions are left out (Ultralytics' converter skips iscrowd too)
    mine = {i["image_id"]: [lab for lab in labels if lab["image_id"] == i["image_id"]] for i in images}
    for task in ("detect", "segment"):
        text = label_text(task, mine[astro["image_id"]], 512, 512, CATS)
        rows = parse_yolo_lines(text, 512, 512, CATS) if task == "detect" else text.splitlines()
        assert len(rows) == 3, (task, text)  # ring, parts, face
        assert label_text(task, mine[coffee["image_id"]], coffee["width"], coffee["height"], CATS) == ""
    assert {r["category"] for r in parse_yolo_lines(label_text("detect", mine[astro["image_id"]], 512, 512, CATS),
                                                    512, 512, CATS)} == {"cat", "face"}

    # lineage carries the flag and the import run id
    inputs = ReleaseInputs(images=images, resolved=resolved, labels=labels, categories=CATS, ratios={},
                           reviews={r["review_id"]: r for r in store.reviews()},
                           human_labels={(h["annotation_id"], h["review_id"]): h for h in store.human_labels()})
    rows = release_lineage_rows(labels, {i["image_id"]: i for i in images}, {}, inputs)
    assert {r["label_id"] for r in rows if r["iscrowd"]} == crowd_ids
    assert {r["import_run_id"] for r in rows} == {RUN}


def test_coco_crowd_values_and_keypoints(images):
    obj = coco_review(images, _masks())
    obj["annotations"][0]["iscrowd"] = 2
    obj["annotations"][4]["keypoints"] = [5, 5, 2]  # a crowd region with a labeled point
    recs = parse_coco_review(obj, where="review.json", fallback_time="2026-01-01T00:00:00+00:00",
                             keypoints={"person": ["nose"]})
    res = import_review(recs, file_name="review.json", import_sha256="0" * 64, source="coco/review", images=images,
                        exported=[], known_review_keys=set(), categories=CATS, keypoint_schema={"person": ["nose"]})
    reasons = sorted(r["reason"] for r in res["rejects"])
    assert len(reasons) == 2 and res["reviews"] == []
    assert "annotation 11: iscrowd 2 (want 0 or 1)" in reasons[0]
    assert "a crowd region (iscrowd) cannot carry labeled keypoints" in reasons[1]
    # COCO's own crowd annotations in keypoint files carry all-zero keypoints: accepted, dropped
    obj["annotations"][0]["iscrowd"] = True
    obj["annotations"][4]["keypoints"] = [0, 0, 0]
    recs = parse_coco_review(obj, where="review.json", fallback_time="2026-01-01T00:00:00+00:00",
                             keypoints={"person": ["nose"]})
    res = import_review(recs, file_name="review.json", import_sha256="0" * 64, source="coco/review", images=images,
                        exported=[], known_review_keys=set(), categories=CATS, keypoint_schema={"person": ["nose"]})
    assert res["rejects"] == []
    crowds = [h for h in res["human_labels"] if h["iscrowd"]]
    assert len(crowds) == 2 and all(h["keypoints"] is None for h in crowds)


CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><id>7</id><updated>2026-11-28 10:00:00.000000+00:00</updated>
<owner><username>alice</username></owner></task></meta>
<image id="0" name="photos/astronaut.png" width="512" height="512">
  <box label="person" source="manual" occluded="0" xtl="10" ytl="420" xbr="300" ybr="500" z_order="0">
    <attribute name="is_crowd">{crowd}</attribute></box>
  <polygon label="cat" source="manual" occluded="0" points="20,300;80,300;80,340;20,340" z_order="0">
    <attribute name="is_crowd">false</attribute><attribute name="colour">grey</attribute></polygon>
</image>
</annotations>
"""


@pytest.mark.parametrize("value", ["true", "1"])
def test_cvat_is_crowd_attribute(images, value):
    data = CVAT.format(crowd=value).encode()
    recs, _ = parse_cvat(data, where="annotations.xml")
    res = import_review(recs, file_name="annotations.xml", import_sha256="1" * 64, source="cvat/task-7",
                        images=images, exported=[], known_review_keys=set(), categories=CATS, import_run_id=RUN)
    assert res["rejects"] == []
    person, cat = sorted(res["human_labels"], key=lambda h: h["category"], reverse=True)
    assert person["iscrowd"] is True and cat["iscrowd"] is False
    assert json.loads(cat["attributes"]) == {"colour": "grey", "cvat_source": "manual"}  # is_crowd is a column
    assert person["bbox"] == [10.0, 420.0, 300.0, 500.0] and person["import_run_id"] == RUN


def test_cvat_bad_is_crowd_rejects_the_image(images):
    recs, _ = parse_cvat(CVAT.format(crowd="maybe").encode(), where="annotations.xml")
    res = import_review(recs, file_name="annotations.xml", import_sha256="1" * 64, source="cvat/task-7",
                        images=images, exported=[], known_review_keys=set(), categories=CATS)
    (rej,) = res["rejects"]
    assert "is_crowd 'maybe' (want true / false or 1 / 0)" in rej["reason"] and res["reviews"] == []


def test_review_tables_written_before_the_new_columns_still_read(tmp_path, images):
    """An import stored before iscrowd / import_run_id existed: reads with nulls, resolves to
    single objects, and its lineage says what is missing."""
    astro = images[0]
    store = ReviewStore(tmp_path / "human_labels")
    folder = store.imports_dir / "old-import"
    folder.mkdir(parents=True)
    old_reviews = pa.schema([f for f in REVIEWS if f.name != "import_run_id"])
    old_labels = pa.schema([f for f in HUMAN_LABELS if f.name not in ("iscrowd", "import_run_id")])
    review = {"review_id": "rv-1", "source": "label-studio/project-1", "tool": "label-studio", "task_id": "5",
              "tool_annotation_id": "9", "updated_at": "2025-01-01T00:00:00Z", "image_id": astro["image_id"],
              "annotator": "ls-user-1", "was_cancelled": False, "n_regions": 1, "import_sha256": "a" * 64,
              "file": "old.json"}
    label = {"annotation_id": "hl-1", "review_id": "rv-1", "image_id": astro["image_id"], "category": "face",
             "bbox": [1.0, 2.0, 30.0, 40.0], "annotator": "ls-user-1", "tool": "label-studio",
             "source": "label-studio/project-1", "action": "added", "reviewed_at": "2025-01-01T00:00:00Z",
             "import_sha256": "a" * 64}
    pq.write_table(pa.Table.from_pylist([review], old_reviews), folder / "reviews.parquet")
    pq.write_table(pa.Table.from_pylist([label], old_labels), folder / "human_labels.parquet")
    pq.write_table(pa.Table.from_pylist([], pa.schema([("file", pa.string()), ("item", pa.string()),
                                                       ("reason", pa.string())])), folder / "rejects.parquet")
    (h,) = store.human_labels()
    assert h["iscrowd"] is None and h["import_run_id"] is None and store.reviews()[0]["import_run_id"] is None
    queue = [{"image_id": astro["image_id"], "route": "human_review", "reason": "r", "policy_id": CFG.policy_id()}]
    labels, _ = resolve_labels([astro], queue, [], store.latest_reviews(), store.current_human_labels(), CFG)
    (lab,) = labels
    assert "iscrowd" not in lab
    ann = build_coco([dict(astro, file_name="a.png")], labels, CATS)["annotations"][0]
    assert ann["iscrowd"] == 0
    inputs = ReleaseInputs(images=[astro], resolved=[], labels=labels, categories=CATS, ratios={},
                           reviews={r["review_id"]: r for r in store.reviews()},
                           human_labels={(x["annotation_id"], x["review_id"]): x for x in store.human_labels()})
    (row,) = release_lineage_rows(labels, {astro["image_id"]: dict(astro, release_tag=None)}, {}, inputs)
    problems = trace_problems([dict(row, release_tag="dataset-v1", git_sha="b" * 40)])
    assert problems == [f"{lab['label_id']}: lacks import_run_id"]
