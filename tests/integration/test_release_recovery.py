"""A release killed at any moment (``kill -9`` of the CLI, or of its whole process group while git
holds its index lock, a full disk) leaves a workspace the next ``labelloop release`` repairs on its
own: the release is tagged and complete, or not there at all; the next release reproduces the
killed one's bytes and COCO ids (or cuts the next version); git and DVC report a clean workspace;
a COCO annotation id never names two different labels across releases.

The kills are real SIGKILLs at named moments of the release (labelloop.workspace.recovery,
LABELLOOP_FAILURES), of a CLI process started for each case."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labelloop import tables
from labelloop.images import samples
from labelloop.release.ids import identity
from labelloop.tables.schemas import RELEASE_LINEAGE
from labelloop.workspace import repo, versioning
from labelloop.workspace.layout import Workspace
from support.helpers import REPO_ROOT, cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A workspace made as the first part of the demo makes it (dataset-v1 released, then the
    hand-made review imported), so ``release`` cuts dataset-v2 from the reviewed labels (at the
    default 2% target: they are all reviewed)."""
    root = tmp_path_factory.mktemp("recovery") / "demo"
    cli(root, "init")
    photos = samples.stage_photos(root.parent / "staged")
    cli(root, "ingest", str(photos), "--batch", "photos")
    cli(root, "run")
    assert "released dataset-v1" in cli(root, "release").output
    cli(root, "import-review", str(samples.demo_review_path()))
    return root


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    """The same workspace released without any failure: dataset-v2 as it should be."""
    root = tmp_path_factory.mktemp("recovery") / "reference"
    shutil.copytree(demo, root, symlinks=True)
    out = cli(root, "release").output
    assert "released dataset-v2" in out
    return root


def copy_of(demo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(demo, root, symlinks=True)
    return root


def release(root: Path, failures: str | None = None) -> subprocess.CompletedProcess:
    """``labelloop release`` in a process (and process group) of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("LABELLOOP_WORKSPACE", "LABELLOOP_FAILURES")}
    if failures:
        env["LABELLOOP_FAILURES"] = failures
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "--workspace", str(root), "release"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, start_new_session=True)


def release_files(root: Path) -> dict[str, bytes]:
    folder = root / "release"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def coco_ids(root: Path) -> dict[str, int]:
    """label identity -> COCO annotation id, in the release in ``release/``."""
    return {identity(r): r["coco_annotation_id"]
            for r in tables.read_rows(root / "release" / "lineage.parquet", RELEASE_LINEAGE)}


def assert_clean(root: Path) -> None:
    """git has nothing to commit, DVC has no changed output, no lock or pending record is left."""
    assert versioning.git(root, "status", "--porcelain") == ""
    status = versioning.dvc(root, "status", "release")
    assert "changed outs" not in status and "not in cache" not in status, status
    assert not (root / ".git" / "index.lock").exists() and not (root / ".labelloop" / "release-pending.json").exists()


def assert_ids_never_reused(root: Path) -> None:
    """Across every release of the workspace, one COCO annotation id names one object: rows that
    share an id share their label_id or their identity (labelloop.release.ids: a reviewed model
    box keeps the id of the prediction it came from)."""
    seen: dict[int, set[str]] = {}
    for t in versioning.release_tags(root):
        data = versioning.read_release_file(root, "lineage.parquet", t["tag"])
        path = root / ".labelloop" / f"check-{t['tag']}.parquet"
        path.write_bytes(data)
        for r in tables.read_rows(path, RELEASE_LINEAGE):
            keys = {r["label_id"], identity(r)}
            first = seen.setdefault(r["coco_annotation_id"], keys)
            assert first & keys, (t["tag"], r["coco_annotation_id"], first, keys)
        path.unlink()


@pytest.mark.parametrize("failure", ["release:before-swap=kill", "release:before-commit=kill",
                                     "release:git-add=killpg+.git/index.lock", "release:after-commit=kill"])
def test_a_release_killed_before_its_tag_is_undone_and_cut_again_the_same(demo, reference, tmp_path, failure):
    root = copy_of(demo, tmp_path)
    killed = release(root, failure)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert [t["tag"] for t in versioning.release_tags(root)] == ["dataset-v1"]
    again = release(root)
    assert again.returncode == 0 and "released dataset-v2" in again.stdout, again.stdout + again.stderr
    assert release_files(root) == release_files(reference)  # the same bytes, hence the same ids and splits
    assert coco_ids(root) == coco_ids(reference)
    log = versioning.git(root, "log", "--format=%s")
    assert log.count("release dataset-v2") == 1  # no untagged release commit was left behind
    assert repo.read_release_index(Workspace.at(root), "dataset-v2") is not None
    assert (root / "tables" / "qa" / "releases" / "dataset-v2" / "qa_report.json").is_file()
    assert_clean(root)


def test_a_release_killed_after_its_tag_is_complete_and_ids_stay_stable(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    killed = release(root, "release:after-tag=kill")
    assert killed.returncode == -9
    assert [t["tag"] for t in versioning.release_tags(root)][-1] == "dataset-v2"
    ws = Workspace.at(root)
    assert repo.read_release_index(ws, "dataset-v2") is not None  # bookkeeping came before the tag
    assert (root / "tables" / "qa" / "releases" / "dataset-v2" / "qa_report.json").is_file()
    again = release(root)
    assert again.returncode == 0 and "no change since dataset-v2" in again.stdout, again.stdout + again.stderr
    assert_clean(root)
    # new labels later: a new release gives fresh ids to new labels and keeps the others' ids
    review = json.loads((root / "review_inbox" / "demo_review.json").read_text())
    task = next(t for t in review if t["annotations"][0]["result"])
    ann = task["annotations"][0]
    ann["updated_at"] = "2026-12-01T00:00:00.000000Z"
    ann["result"] = ann["result"][:1]
    moved = dict(ann["result"][0], id="moved")
    moved["value"] = dict(moved["value"], x=moved["value"]["x"] / 2)
    ann["result"].append(moved)
    (tmp_path / "edit.json").write_text(json.dumps([task]))
    cli(root, "import-review", str(tmp_path / "edit.json"))  # the task names its project: the same source
    out = cli(root, "release").output
    assert "released dataset-v3" in out
    assert_ids_never_reused(root)
    assert_clean(root)


def test_a_full_disk_during_the_bookkeeping_cuts_no_release_and_says_where(demo, reference, tmp_path):
    root = copy_of(demo, tmp_path)
    full = release(root, "release:registries=enospc")
    assert full.returncode == 1
    err = full.stderr.strip().splitlines()[-1]
    assert err.startswith("labelloop: error: ") and "No space left on device" in err and "coco_ids" in err, err
    assert [t["tag"] for t in versioning.release_tags(root)] == ["dataset-v1"]
    again = release(root)
    assert again.returncode == 0 and "released dataset-v2" in again.stdout
    assert release_files(root) == release_files(reference)
    assert_clean(root)


def test_a_git_lock_of_a_live_git_process_is_named_not_removed(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    lock = root / ".git" / "index.lock"
    lock.touch()
    git = subprocess.Popen(["git", "cat-file", "--batch"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        res = release(root)
    finally:
        git.kill()
        git.wait()
    assert res.returncode == 1 and lock.exists()
    err = res.stderr.strip().splitlines()[-1]
    assert f"{lock} is held while process {git.pid}" in err and f"rm {lock}" in err, err
    assert [t["tag"] for t in versioning.release_tags(root)] == ["dataset-v1"]
