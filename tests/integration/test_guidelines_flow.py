"""Guidelines are versioned with the labels (#16): a workspace made by ``labelloop init`` gets
``guidelines.md``; its sha256 goes on the review export, through a Label Studio JSON export of the
tasks (the data labelloop sent, exported back) onto every human label, into the release manifest,
note and git commit, ``lineage`` and ``diff``; a workspace that loses the file records "none"."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from labelloop import tables
from labelloop.images import samples
from labelloop.review.export import export_batch
from labelloop.review.store import review_store
from labelloop.tables.schemas import REVIEW_QUEUE
from labelloop.workspace import repo
from labelloop.workspace.guidelines import GuidelinesWarning
from labelloop.workspace.layout import Workspace
from resources.prelabeler import PreLabelerResource
from support.helpers import cli

pytestmark = pytest.mark.e2e

EDIT = "\n## Added after dataset-v1\n\n- A cat is boxed whole, not just its face.\n"


def sha_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(root, *args) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    base = tmp_path_factory.mktemp("guidelines")
    root = base / "ws"
    cli(root, "init")
    g1 = sha_of(root / "guidelines.md")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["qa"]["audit_error_target"] = 0.5  # both releases go through (docs/guides/qa.md)
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli(root, "ingest", str(samples.stage_photos(base)), "--batch", "photos")
    cli(root, "run")
    assert "released dataset-v1" in cli(root, "release").output
    with open(root / "guidelines.md", "a", encoding="utf-8") as fh:
        fh.write(EDIT)
    g2 = sha_of(root / "guidelines.md")
    review = json.loads(samples.demo_review_path().read_text(encoding="utf-8"))
    for task in review:  # Label Studio exports back the task data labelloop sent, this field included
        task["data"]["guidelines_sha256"] = g1
    export = base / "project-1-at-2026-12-06.json"
    export.write_text(json.dumps(review), encoding="utf-8")
    cli(root, "import-review", str(export))
    out = cli(root, "release")
    assert "released dataset-v2" in out.output, out.output
    return Workspace.at(root), g1, g2


def test_init_writes_the_template_and_git_tracks_it(flow):
    ws, g1, _ = flow
    assert git(ws.root, "show", "dataset-v1:guidelines.md").startswith("# Labeling guidelines: ")
    assert hashlib.sha256(git(ws.root, "show", "dataset-v1:guidelines.md").encode()).hexdigest() == g1
    assert git(ws.root, "show", "dataset-v2:guidelines.md").endswith(EDIT)  # the release commit holds the edit


def test_the_review_export_records_the_version(flow):
    ws, g1, _ = flow
    out = ws.review_out / "photos"
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["guidelines_sha256"] == g1 and manifest["guidelines_file"] == "guidelines.md"
    assert sha_of(out / "guidelines.md") == g1  # the text the reviewers were given
    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks and {t["data"]["guidelines_sha256"] for t in tasks} == {g1}
    queue = tables.read_rows(repo.queue_path(ws, "photos"), REVIEW_QUEUE)
    assert {q["guidelines_sha256"] for q in queue if q["exported_to"]} == {g1}
    assert {q["guidelines_sha256"] for q in queue if not q["exported_to"]} <= {None}


def test_every_human_label_carries_the_guidelines_its_reviewer_worked_under(flow):
    ws, g1, _ = flow
    humans = review_store(ws).human_labels()
    assert len(humans) >= 7 and {h["guidelines_sha256"] for h in humans} == {g1}


def test_the_release_manifest_note_and_lineage_name_the_version(flow):
    ws, g1, g2 = flow
    assert json.loads((ws.release_dir / "manifest.json").read_text())["guidelines_sha256"] == g2
    note = git(ws.root, "tag", "-l", "--format=%(contents)", "dataset-v2")
    assert f"guidelines: sha256 {g2}" in note
    assert f"guidelines changed: {g1} -> {g2}" in note
    lin = pq.read_table(ws.release_dir / "lineage.parquet").to_pylist()
    assert {r["guidelines_sha256"] for r in lin if r["origin"] == "human"} == {g1}
    assert {r["guidelines_sha256"] for r in lin if r["origin"] == "model"} <= {None}
    out = cli(ws.root, "lineage", "grace_hopper.jpg", "--release", "dataset-v2").output
    assert f"guidelines sha256 {g2}" in out and f"guidelines {g1[:12]}, import run " in out
    assert f") under guidelines {g1[:12]};" in cli(ws.root, "lineage", "grace_hopper.jpg").output
    summary = (ws.tables / "lineage" / "dataset-v2" / "summary.md").read_text()
    assert f"| guidelines sha256 | {g2} |" in summary


def test_the_qa_report_shows_the_version_and_the_human_labels_made_under_each(flow):
    ws, g1, g2 = flow
    made = [h for h in review_store(ws).current_human_labels() if h["action"] != "deleted"]
    assert repo.read_qa(ws)["guidelines"] == {"sha256": g2, "human_labels_by_version": {g1: len(made)}}
    html = repo.qa_paths(ws)[1].read_text(encoding="utf-8")
    assert f"guidelines sha256 <code>{g2}</code>" in html and f"<code>{g1[:12]}</code> {len(made)}" in html


def test_diff_says_the_guidelines_changed(flow):
    ws, g1, g2 = flow
    out = cli(ws.root, "diff", "dataset-v1", "dataset-v2").output
    assert f"guidelines changed: {g1} -> {g2}" in out
    assert json.loads(cli(ws.root, "diff", "dataset-v2", "--json").output)["guidelines"] == {
        "from": g1, "to": g2, "changed": True}


def test_a_workspace_without_the_file_warns_and_records_none(flow):
    ws, _, _ = flow
    (ws.root / "guidelines.md").unlink()
    model = PreLabelerResource().get(ws.config(), str(ws.root))
    with pytest.warns(GuidelinesWarning, match="guidelines.md is missing"):
        got = export_batch(ws, "photos", model.model_id, set())
    assert got["guidelines_sha256"] == "none"
    out = ws.review_out / "photos"
    assert json.loads((out / "export.json").read_text())["guidelines_sha256"] == "none"
    assert not (out / "guidelines.md").exists()  # no stale copy of older guidelines
    assert {t["data"]["guidelines_sha256"] for t in json.loads((out / "tasks.json").read_text())} == {"none"}
    res = cli(ws.root, "release")  # the same labels: unchanged, and nothing fails for the missing file
    assert "dataset-v2" in res.output
