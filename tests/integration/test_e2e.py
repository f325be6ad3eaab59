"""The whole loop through Dagster on the bundled real photos, in temporary workspaces."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from pycocotools.coco import COCO

from labelloop import tables
from labelloop.geometry.boxes import xyxy_to_xywh
from labelloop.images import samples
from labelloop.review.store import review_store
from labelloop.tables.schemas import LABELS
from labelloop.workspace import versioning
from labelloop.workspace.layout import Workspace
from labelloop.workspace.repo import read_labels
from support.helpers import cli
from support.readers_venv import read_with_readers

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "ws"
    out = cli(root, "demo")
    return Workspace.at(root), out.output


def test_demo_releases_v2_with_every_gate_measured_and_blocks_the_careless_re_review(demo):
    ws, out = demo
    assert "images ingested   12 (12 ok, 0 rejected" in out
    assert "gold set demo-gold registered (4 images, 5 objects, drawn by hand)" in out
    assert "release           dataset-v1 (1 images, 1 labels)" in out
    assert "release           dataset-v2 (12 images, 7 labels)" in out
    assert "[7/7] imported the careless re-review review_inbox/demo_review_careless.json; release: blocked" in out
    assert "the expected outcome: the careless re-review of the gold photos is caught by the reviewer-vs-gold " \
           "gate (gold_mean_iou)" in out
    assert "dataset-v2 stays the current release, nothing of it changed" in out
    v2 = out[out.index("QA gates of dataset-v2"):out.index("QA gates of the blocked labels")]
    assert "not measured" not in v2 and "FAIL" not in v2
    # all 12 images reviewed, 5 reviewer annotations of gold images without error: Wilson 0/5 = [0, 0.434]
    assert "release_error_rate       0.000 [0.000, 0.434]    < 0.02  warn" in v2
    assert "gold_mean_iou            0.925 [0.850, 0.993]   >= 0.5   warn" in v2
    blocked = out[out.index("QA gates of the blocked labels"):]
    assert "gold_mean_iou            0.058 [0.006, 0.131]   >= 0.5   FAIL" in blocked
    assert "pre-labeler       precision 0.333, recall 0.286 against the reviewers" in out
    assert "labeling cost     without pre-labels USD 1.20" in out and "with pre-labels USD 1.44" in out
    assert "lineage           label lb-" in out and "releases: dataset-v2" in out
    assert f"labelloop --workspace {ws.root} ui" in out
    assert [t["tag"] for t in versioning.release_tags(ws.root)] == ["dataset-v1", "dataset-v2"]
    assert "release dataset-v2 (in release/): 12 images, 7 labels" in cli(ws.root, "status").output


def test_demo_runs_twice_in_a_row(demo):
    ws, _ = demo
    out = cli(ws.root, "demo")
    assert "[6/7] release: dataset-v2" in out.output and "release: blocked" in out.output


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    res = cli(tmp_path, "demo", ok=False)
    assert res.exit_code == 1 and "is not a labelloop demo workspace" in res.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A workspace at the default QA settings: both releases go through (the second holds only
    reviewed images, so the pre-labeler's failed audit does not block it)."""
    base = tmp_path_factory.mktemp("rel")
    root = base / "ws"
    cli(root, "init")
    photos = samples.stage_photos(base)
    cli(root, "ingest", str(photos), "--batch", "photos")
    cli(root, "run")
    out1 = cli(root, "release")
    assert "released dataset-v1" in out1.output
    cli(root, "import-review", str(samples.demo_review_path()))
    out2 = cli(root, "release")
    assert "released dataset-v2: 12 images, 7 labels" in out2.output, out2.output
    return Workspace.at(root)


def test_coco_loads_with_pycocotools_and_matches_the_labels(released):
    ws = released
    labels = {r["label_id"]: r for r in tables.read_rows(ws.release_dir / "labels.parquet", LABELS)}
    seen = 0
    for f in sorted((ws.release_dir / "annotations").glob("instances_*.json")):
        split = f.stem.split("_", 1)[1]
        coco = COCO(str(f))
        cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert list(cats.values()) == ["person", "face", "cat"]
        for img in coco.loadImgs(coco.getImgIds()):
            assert (ws.release_dir / "images" / split / img["file_name"]).is_file()
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
                lab = labels[ann["label_id"]]
                assert lab["image_id"] == img["sha256"] and cats[ann["category_id"]] == lab["category"]
                assert ann["bbox"] == pytest.approx(xyxy_to_xywh(lab["bbox"]), abs=1e-6)
                seen += 1
    assert seen == len(labels) == 7
    data = yaml.safe_load((ws.release_dir / "data.yaml").read_text())
    assert data["nc"] == 3 and "path" not in data


def test_the_demo_release_loads_in_datumaro_and_supervision(released):
    """The demo's release in other tools' readers (tests/support/release_readers.py in
    .venv-readers): every image found, the same objects per split as the COCO files hold."""
    rel = released.release_dir
    got = read_with_readers(rel)
    for f in sorted((rel / "annotations").glob("instances_*.json")):
        split = f.stem.split("_", 1)[1]
        coco = json.loads(f.read_text())
        n_img, n_obj = len(coco["images"]), len(coco["annotations"])
        dm, sv = got["datumaro"]["coco_instances"][split], got["supervision"][split]
        assert (dm["images"], dm["missing_media"], dm["objects"].get("Bbox", 0)) == (n_img, 0, n_obj)
        assert (sv["images"], sv["missing_media"], sv["objects"]) == (n_img, 0, n_obj)
        dy = got["datumaro"]["yolo"][split]
        assert (dy["images"], dy["missing_media"], dy["objects"].get("Bbox", 0)) == (n_img, 0, n_obj)


def test_release_is_byte_deterministic_and_twice_makes_no_new_tag(released):
    ws = released
    before = {p: p.read_bytes() for p in ws.release_dir.rglob("*") if p.is_file()}
    out = cli(ws.root, "release")
    assert "no change since dataset-v2" in out.output
    assert [t["tag"] for t in versioning.release_tags(ws.root)] == ["dataset-v1", "dataset-v2"]
    assert {p: p.read_bytes() for p in ws.release_dir.rglob("*") if p.is_file()} == before


def test_negatives_have_empty_yolo_files(released):
    txts = list((released.release_dir / "labels").rglob("*.txt"))
    assert len(txts) == 12
    assert sum(1 for t in txts if t.read_text() == "") == 8  # the hand-made review's negatives


def test_model_rerun_never_changes_a_reviewed_label(released, tmp_path):
    """Invariant 1: new inference settings = new model_id; human labels stay. All 12 images are
    reviewed, so the new model predicts nothing (reviewed images are never re-predicted; the
    unreviewed case: tests/integration/test_reprocess.py)."""
    root = tmp_path / "copy"
    shutil.copytree(released.root, root, symlinks=True)
    ws = Workspace.at(root)
    before = sorted((r["label_id"], tuple(r["bbox"]), r["category"]) for r in read_labels(ws)[0])
    humans = review_store(ws).current_human_labels()
    tasks_before = (root / "review_out" / "photos" / "tasks.json").read_bytes()
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["prelabeler"]["max_side"] = 640
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = cli(root, "run")
    assert "batch photos" not in out.output  # not stale: every image is reviewed
    assert sorted((r["label_id"], tuple(r["bbox"]), r["category"]) for r in read_labels(ws)[0]) == before
    assert review_store(ws).current_human_labels() == humans
    assert len(list((root / "tables" / "prelabels" / "photos").iterdir())) == 1  # no new prediction set
    assert (root / "review_out" / "photos" / "tasks.json").read_bytes() == tasks_before  # nothing re-sent


def test_rollback_restores_bytes_and_keeps_later_tags(released, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(released.root, root, symlinks=True)
    ws = Workspace.at(root)
    v2 = {p.relative_to(ws.release_dir): p.read_bytes() for p in ws.release_dir.rglob("*") if p.is_file()}
    cli(root, "rollback", "dataset-v1")
    v1_manifest = json.loads((ws.release_dir / "manifest.json").read_text())
    assert v1_manifest["counts"]["images"] < 12
    for rel, sha in v1_manifest["files"].items():
        import hashlib

        assert hashlib.sha256((ws.release_dir / rel).read_bytes()).hexdigest() == sha
    assert [t["tag"] for t in versioning.release_tags(root)] == ["dataset-v1", "dataset-v2"]
    assert "changed deps" in versioning.dvc(root, "status")
    # releasing the unchanged labels makes no new tag but brings release/ back to dataset-v2
    out = cli(root, "release")
    assert "no change since dataset-v2: no new release; release/ restored to dataset-v2" in out.output
    assert {p.relative_to(ws.release_dir): p.read_bytes() for p in ws.release_dir.rglob("*") if p.is_file()} == v2
    assert "changed deps" not in versioning.dvc(root, "status")
    res = cli(root, "rollback", "dataset-v9", ok=False)
    assert res.exit_code == 1 and "unknown release tag 'dataset-v9'" in res.output


def test_status_and_lineage_json(released):
    ws = released
    st = json.loads(cli(ws.root, "status", "--json").output)
    (batch,) = st["batches"]
    img = next(i for i in batch["images"] if i["source_path"] == "astronaut.png")
    assert {"image_id", "source_path", "width", "height", "status", "reject_reason", "duplicate_of",
            "near_duplicate_of", "route"} <= img.keys()
    assert (img["width"], img["height"], img["status"], img["route"]) == (512, 512, "ok", "human_review")
    assert any(i["near_duplicate_of"] for i in batch["images"])
    assert [r["tag"] for r in st["releases"]] == ["dataset-v1", "dataset-v2"]
    lin = json.loads(cli(ws.root, "lineage", "astronaut.png", "--json").output)
    assert lin["image"]["image_id"] == img["image_id"]
    person = next(lab for lab in lin["labels"] if lab["category"] == "person")
    assert person["origin"] == "human" and person["annotator"] == "ls-user-3"
    assert person["bbox_xyxy"] == pytest.approx([19, 15, 363, 512], abs=0.01)
    assert person["release"] == ["dataset-v2"]
    assert {"label_id", "origin", "category", "bbox_xyxy", "score", "model_id", "annotator", "action",
            "route_reason", "release"} <= person.keys()
    auto = json.loads(cli(ws.root, "lineage", "grace_hopper.jpg", "--json").output)
    assert auto["image"]["route"] == "qa_sample"
    # text: a near duplicate says why it has no route (was "route None: None [None]"); boxes named xyxy
    near = next(i for i in batch["images"] if i["near_duplicate_of"])
    text = cli(ws.root, "lineage", near["image_id"][:12]).output
    assert f"not routed: a near duplicate of image {near['near_duplicate_of'][:12]}" in text and "None" not in text
    text = cli(ws.root, "lineage", "astronaut.png").output
    assert "boxes: [x0, y0, x1, y1] in pixels" in text and "route human_review" in text


def test_release_with_nothing_resolved_exits_3_with_one_reason(tmp_path):
    """Nothing resolved yet: `labelloop release` exits 3 (blocked) and says why once."""
    from support.helpers import cli

    ws = tmp_path / "ws"
    cli(ws, "init")
    r = cli(ws, "release", ok=False)
    assert r.exit_code == 3
    line = [ln for ln in r.output.splitlines() if "release blocked" in ln]
    assert len(line) == 1 and line[0].count("release blocked") == 1 and "nothing to release" in line[0], r.output


def test_the_review_inbox_sensor_starts_no_run_for_files_already_imported(released):
    """The demo imported its review file through the CLI: the sensor's first tick (no cursor yet)
    sees the file as new by size and mtime, and the review-inbox ledger says it is imported, so
    no run starts (a run would read nothing and mark the QA report stale)."""
    import dagster as dg

    from pipelines.sensors import review_inbox_sensor
    from resources.storage import WorkspaceResource

    storage = WorkspaceResource(root=str(released.root))
    with dg.build_sensor_context(resources={"storage": storage}, instance=dg.DagsterInstance.ephemeral()) as ctx:
        result = review_inbox_sensor(ctx)
    assert isinstance(result, dg.SkipReason) and "already imported (review-inbox ledger)" in result.skip_message
