"""The review export of a project with a tag category (labelloop.review.export.export_batch): the
model's image-level tag pre-labels go to Label Studio as one ``choices`` prediction on the ``tags``
control and to CVAT as ``<tag source="auto">``, never as boxes. The workspace is real (the bundled
photos, the embedded backend's box pre-labels); the tag pre-label rows are added to the batch's
predictions as a prompted backend writes them (one PREDICTIONS row per image and tag category)."""

from __future__ import annotations

import json
import shutil

import yaml

from labelloop import tables
from labelloop.formats.cvat.reader import parse_cvat
from labelloop.ingest.files import ingest
from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.stage import prelabel_batch
from labelloop.review.export import export_batch
from labelloop.routing.queue import route_batch
from labelloop.tables.schemas import PREDICTIONS
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from resources.prelabeler import PreLabelerResource
from support.helpers import skimage_data


def test_tag_pre_labels_are_exported_as_choices_and_cvat_tags(tmp_path):
    src = tmp_path / "src" / "photos"
    src.mkdir(parents=True)
    for n in ("astronaut.png", "coffee.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    raw = yaml.safe_load((ws.root / "labelloop.yaml").read_text())
    raw["categories"].append({"name": "outdoor", "level": "tag"})
    (ws.root / "labelloop.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ingest(ws, src, "b1")
    model = PreLabelerResource().get(ws.config(), str(ws.root))
    scan_batch(ws, "b1")
    prelabel_batch(ws, "b1", model, run_id="t")
    images = {r["source_path"].rsplit("/", 1)[-1]: r for r in repo.images_to_label(ws, "b1")}
    astro = images["astronaut.png"]["image_id"]
    tag = {"prediction_id": "pr-tag-astro", "image_id": astro, "category": "outdoor", "bbox": [1.0, 2.0, 30.0, 40.0],
           "score": 0.8125, "mask": None, "model_id": model.model_id, "checkpoint_sha256": model.checkpoint_sha256,
           "prompt": "outdoor", "run_id": "t"}
    tables.write_rows([tag], PREDICTIONS, repo.prelabel_dir(ws, "b1", model.model_id) / "zz-tags.parquet")
    route_batch(ws, "b1", model.model_id)
    export_batch(ws, "b1", model.model_id, set())
    out = ws.review_out / "b1"
    tasks = {t["data"]["image_id"]: t for t in json.loads((out / "tasks.json").read_text())}
    result = tasks[astro]["predictions"][0]["result"]
    assert result[0] == {"id": "tags-" + astro[:12], "from_name": "tags", "to_name": "image", "type": "choices",
                         "value": {"choices": ["outdoor"]}, "score": 0.8125}
    assert all(r["from_name"] != "label" or r["value"]["rectanglelabels"] != ["outdoor"] for r in result)
    xml = (out / "annotations.xml").read_text(encoding="utf-8")
    assert '<tag label="outdoor" source="auto"/>' in xml
    # as CVAT exports the task once uploaded (it numbers the task): the tag comes back as the image's
    records, _ = parse_cvat(xml.replace("<id/>", "<id>7</id>", 1).encode("utf-8"), where="annotations.xml")
    by_name = {r["task_id"].rsplit("/", 1)[-1]: r for r in records}
    assert [r for r in by_name["astronaut.png"]["regions"] if r["kind"] == "tag"] == [
        {"kind": "tag", "region_id": "tags", "category": None, "value": {"choices": ["outdoor"]}}]
    assert all(r.get("category") != "outdoor" for r in by_name["astronaut.png"]["regions"])
    assert not [r for r in by_name["coffee.png"]["regions"] if r["kind"] == "tag"]
    exported = tables.read_rows(repo.exported_path(ws, "b1"), tables.schemas.EXPORTED_PREDICTIONS)
    assert "pr-tag-astro" not in {e["prediction_id"] for e in exported}
