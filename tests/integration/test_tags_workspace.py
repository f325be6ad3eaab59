"""Image-level tags end to end on the bundled photos: a ``level: tag`` category goes from the
review export (Label Studio Choices) through a Label Studio JSON export with tag answers (one
bad) to the QA report, ``labelloop levels`` and the release's ``image_labels.csv``."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
import yaml

from labelloop import tables
from labelloop.images import samples
from labelloop.tables.schemas import RELEASE_IMAGES
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from support.helpers import cli

pytestmark = pytest.mark.e2e


def tag_result(rid: str, *choices: str) -> dict:
    return {"value": {"choices": list(choices)}, "id": rid, "from_name": "tags", "to_name": "image",
            "type": "choices", "origin": "manual"}


def test_tag_category_from_export_to_release(tmp_path):
    root = tmp_path / "ws"
    cli(root, "init")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["categories"].append({"name": "outdoor", "level": "tag"})
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli(root, "ingest", str(samples.stage_photos(tmp_path)), "--batch", "photos")
    cli(root, "run")
    ws = Workspace.at(root)
    config = (root / "review_out" / "photos" / "label_config.xml").read_text()
    assert '<Choices name="tags" toName="image" choice="multiple" showInline="true">' in config
    assert '<Label value="outdoor"/>' not in config and '<Choice value="outdoor"/>' in config
    assert '<Choice value="no objects"/>' in config
    assert {q["route"] for q in repo.all_queue(ws)} == {"human_review"}  # no tag pre-label: all reviewed

    tasks = json.loads(samples.demo_review_path().read_text(encoding="utf-8"))
    outdoor = {0, 3, 5}
    for i in outdoor:
        tasks[i]["annotations"][0]["result"].append(tag_result(f"tag{i}", "outdoor"))
    # reviewed for tags only: photo 0 (no "no objects" answer: its boxes were not checked, not a
    # negative) and photo 3 ("no objects" ticked: checked, no box, a negative for the box categories)
    tasks[0]["annotations"][0]["result"] = [tag_result("tag0", "outdoor")]
    tasks[3]["annotations"][0]["result"] = [tag_result("tag3", "outdoor", "no objects")]
    bad = copy.deepcopy(tasks[1])
    bad["id"], bad["annotations"][0]["id"] = 9001, 9002
    bad["annotations"][0]["result"].append(tag_result("bad", "face"))  # a box category as a tag
    review = tmp_path / "review.json"
    review.write_text(json.dumps(tasks + [bad]), encoding="utf-8")
    out = cli(root, "import-review", str(review)).output
    assert "tag 'face' is a box category, not an image-level one" in out, out

    rel = cli(root, "release", ok=False)
    assert rel.exit_code == 0, rel.output
    qa = repo.read_qa(ws)
    assert qa["tags"]["reviewed_images"] == 12
    assert qa["tags"]["prelabel_vs_human"]["outdoor"] == {"tp": 0, "fp": 0, "fn": 3, "precision": None,
                                                          "precision_ci": None, "recall": 0.0,
                                                          "recall_ci": qa["tags"]["prelabel_vs_human"]["outdoor"]["recall_ci"]}
    rows = list(csv.DictReader(io.StringIO((ws.release_dir / "image_labels.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 12 and sum("outdoor" in r["labels"].split(";") for r in rows) == 3
    assert sorted(r["labels"] for r in rows if r["labels"]) == ["no objects;outdoor", "outdoor", "outdoor"]
    images = tables.read_rows(ws.release_dir / "images.parquet", RELEASE_IMAGES)
    assert sorted(r["image_labels"] for r in images) == sorted(r["labels"] for r in rows)
    # the tag-only image without "no objects" is released (image, images.parquet, image_labels.csv)
    # but is no negative: out of the COCO instances and the YOLO view; the "no objects" one is a negative
    # (photo 5, the rocket, was reviewed with no box: with its tag and no "no objects", it is out too)
    unchecked = {t["data"]["image"].rsplit("/", 1)[-1] for t in (tasks[0], tasks[5])}
    negative = {tasks[3]["data"]["image"].rsplit("/", 1)[-1]}
    by_src = {r["source_path"].rsplit("/", 1)[-1]: r for r in images}
    assert set(by_src) >= unchecked | negative
    coco_files = {}
    for split in {r["split"] for r in images}:
        inst = json.loads((ws.release_dir / "annotations" / f"instances_{split}.json").read_text())
        coco_files |= {im["file_name"]: split for im in inst["images"]}
    for name in unchecked:
        r = by_src[name]
        assert (r["resolution"], r["n_labels"], r["image_labels"]) == ("reviewed", 0, "outdoor")
        assert (ws.release_dir / r["file_name"]).is_file()
        assert r["file_name"].rsplit("/", 1)[-1] not in coco_files
        stem = r["file_name"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        assert not (ws.release_dir / "labels" / r["split"] / f"{stem}.txt").exists()
        listed = (ws.release_dir / f"{r['split']}.txt").read_text()
        out_of_view = [x for x in images if x["split"] == r["split"] and x["source_path"].rsplit("/", 1)[-1] in unchecked]
        assert f"./{r['file_name']}\n" not in listed
        assert listed.count("\n") == sum(1 for x in images if x["split"] == r["split"]) - len(out_of_view)
    for name in negative:
        r = by_src[name]
        stem = r["file_name"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        assert r["file_name"].rsplit("/", 1)[-1] in coco_files
        assert (ws.release_dir / "labels" / r["split"] / f"{stem}.txt").read_text() == ""
    assert len(coco_files) == 10
    levels = json.loads(cli(root, "levels", "--json").output)
    tag = next(a for a in levels if a["category"] == "outdoor")
    assert (tag["level"], tag["recommended"], tag["objects"], tag["next_level_cost"]) == ("tag", "tag", 3, 0.18)
