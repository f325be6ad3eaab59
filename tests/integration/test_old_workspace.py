"""A workspace made by the code before the restructuring (commit 5020d4a, the last one with the
flat ``labelloop/`` layout) keeps working with this code: ``run``, ``import-review``, ``release``,
``lineage``, ``rollback``. The old code is taken from this repository's history (``git archive``)
and runs the demo in the same virtual environment, so the workspace is exactly what a user of
that version has on disk."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

from labelloop.workspace import repo, versioning
from labelloop.workspace.layout import Workspace
from support.helpers import REPO_ROOT, cli

BEFORE = "5020d4a"  # main before the restructuring
# Run the old code's CLI: its folder first on sys.path and this checkout's editable-install finder
# (which would resolve `labelloop` to the new code whatever PYTHONPATH says) taken out.
OLD_CLI = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
import labelloop.batch
print("labelloop.batch from", sys.argv[1], flush=True)
sys.argv = ["labelloop"] + sys.argv[2:]
runpy.run_module("pipelines.cli", run_name="__main__")
"""


@pytest.fixture(scope="module")
def old_workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("old")
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", BEFORE,
                              "labelloop", "assets", "resources", "pipelines"], capture_output=True)
    if archive.returncode != 0:
        pytest.fail(f"git archive {BEFORE} failed (a shallow clone lacks the commit): {archive.stderr.decode()[-300:]}")
    code = base / "code"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(code, filter="data")
    ws = base / "ws"
    env = {k: v for k, v in os.environ.items() if k != "LABELLOOP_WORKSPACE"}
    run = subprocess.run([sys.executable, "-c", OLD_CLI, str(code), "demo", "--workspace", str(ws)], env=env,
                         cwd=base, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"labelloop.batch from {code}" in run.stdout  # it really was the old layout that ran
    assert "[6/6] release: blocked" in run.stdout  # the old demo: dataset-v1 cut, v2 blocked by the audit
    return ws


def test_the_new_code_runs_releases_traces_and_rolls_back_an_old_workspace(old_workspace, tmp_path):
    ws = Workspace.at(old_workspace)
    before = {r["image_id"] for r in repo.all_images(ws)}
    labels_before, _ = repo.read_labels(ws)

    out = cli(ws.root, "run")  # every per-batch table is current: only labels are resolved again
    assert "batch photos" not in out.output and "labels: " in out.output
    labels_after, resolved = repo.read_labels(ws)
    assert {r["image_id"] for r in repo.all_images(ws)} == before
    assert sorted(lab["label_id"] for lab in labels_after) == sorted(lab["label_id"] for lab in labels_before)
    assert sum(1 for r in resolved if r["resolution"] == "reviewed") == 12

    out = cli(ws.root, "import-review", str(ws.root / "review_inbox" / "demo_review.json"))
    assert "0 new reviews, 12 already imported" in out.output  # the old store's reviews count as imported

    out = cli(ws.root, "lineage", "grace_hopper.jpg", "--release", "dataset-v1")
    assert "dataset-v1" in out.output

    cfg = ws.root / "labelloop.yaml"  # the demo's documented way to cut v2: a target one audit cannot refute
    raw = yaml.safe_load(cfg.read_text())
    raw.setdefault("qa", {})["audit_error_target"] = 0.25
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = cli(ws.root, "release")
    assert "released dataset-v2" in out.output
    v2 = json.loads((ws.release_dir / "manifest.json").read_text())
    assert v2["counts"]["images"] == 12 and repo.read_release_index(ws, "dataset-v2")["counts"] == v2["counts"]
    # no guidelines.md in a workspace of that version: recorded as "none", and old human labels have no version
    assert not (ws.root / "guidelines.md").exists() and v2["guidelines_sha256"] == "none"
    assert "guidelines: sha256 none" in versioning.tag_message(ws.root, "dataset-v2")
    assert "guidelines: dataset-v1 not recorded, dataset-v2 none" in cli(ws.root, "diff", "dataset-v2").output

    cli(ws.root, "rollback", "dataset-v1")
    assert json.loads((ws.release_dir / "manifest.json").read_text())["counts"]["images"] == 1
    cli(ws.root, "rollback", "dataset-v2")
    assert json.loads((ws.release_dir / "manifest.json").read_text())["content_sha256"] == v2["content_sha256"]
    out = cli(ws.root, "lineage", "astronaut.png")
    assert "dataset-v2" in out.output
