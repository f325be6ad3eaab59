"""Ingest (labelloop.ingest.files) of real photo files into a real workspace (labelloop init)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from labelloop.ingest.files import ingest, list_image_files
from labelloop.ingest.scan import scan_batch
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace, WorkspaceError, read_manifest
from support.helpers import skimage_data

DATA = skimage_data()


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def put(root: Path, rel: str, photo: str) -> Path:
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / photo, dest)
    return dest


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ingest-template") / "ws"
    init_workspace(Workspace.at(root))
    return root


@pytest.fixture
def ws(template, tmp_path) -> Workspace:
    """A fresh copy of an initialized workspace (one `labelloop init` for the module)."""
    root = tmp_path / "ws"
    shutil.copytree(template, root, symlinks=True)
    w = Workspace.at(root)
    assert w.is_initialized() and w.batches() == []
    return w


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_nested_folders_keep_relative_posix_source_path(ws, tmp_path):
    src = tmp_path / "src"
    put(src, "top.jpg", "rocket.jpg")
    put(src, "a/b/chelsea.png", "chelsea.png")
    put(src, "a/coffee.png", "coffee.png")
    res = ingest(ws, src, batch="b1")
    assert res.batch == "b1"
    assert res.copied == ["a/b/chelsea.png", "a/coffee.png", "top.jpg"]
    assert res.already_ingested == [] and res.skipped == []
    assert files_under(ws.inbox / "b1") == ["a/b/chelsea.png", "a/coffee.png", "top.jpg"]
    rows = read_manifest(ws, "b1")
    assert rows == [
        {"source_path": "a/b/chelsea.png", "origin_path": str(src / "a/b/chelsea.png"), "ingest_seq": 1,
         "sha256": sha(DATA / "chelsea.png"), "uri": "inbox/b1/a/b/chelsea.png"},
        {"source_path": "a/coffee.png", "origin_path": str(src / "a/coffee.png"), "ingest_seq": 2,
         "sha256": sha(DATA / "coffee.png"), "uri": "inbox/b1/a/coffee.png"},
        {"source_path": "top.jpg", "origin_path": str(src / "top.jpg"), "ingest_seq": 3,
         "sha256": sha(DATA / "rocket.jpg"), "uri": "inbox/b1/top.jpg"},
    ]
    for r in rows:
        assert (ws.root / r["uri"]).read_bytes() == Path(r["origin_path"]).read_bytes()
    assert ws.batches() == ["b1"]
    assert not list((ws.inbox / "b1").rglob(".tmp-*"))


def test_unicode_and_spaces_in_names(ws, tmp_path):
    src = tmp_path / "src"
    rel = "Fotos del día/café au lait ☕ 1.png"
    put(src, rel, "coffee.png")
    res = ingest(ws, src, batch="uni")
    assert res.copied == [rel]
    assert (ws.inbox / "uni" / rel).read_bytes() == (DATA / "coffee.png").read_bytes()
    line = ws.manifest_path("uni").read_text(encoding="utf-8")
    assert "café au lait ☕ 1.png" in line  # stored as UTF-8, not \u escapes
    (row,) = read_manifest(ws, "uni")
    assert row["source_path"] == rel and row["uri"] == f"inbox/uni/{rel}"


def test_same_file_twice_is_a_noop_in_any_batch(ws, tmp_path):
    src = tmp_path / "src"
    put(src, "astronaut.png", "astronaut.png")
    assert ingest(ws, src, batch="b1").copied == ["astronaut.png"]
    manifest = ws.manifest_path("b1").read_bytes()
    again = ingest(ws, src, batch="b1")
    assert (again.copied, again.already_ingested, again.skipped) == ([], ["astronaut.png"], [])
    assert ws.manifest_path("b1").read_bytes() == manifest
    other = ingest(ws, src, batch="b2")
    assert (other.copied, other.already_ingested, other.skipped) == ([], ["astronaut.png"], [])
    assert files_under(ws.inbox / "b2") == [] and read_manifest(ws, "b2") == []


def test_same_bytes_under_another_name_are_copied(ws, tmp_path):
    src = tmp_path / "src"
    put(src, "cat.png", "chelsea.png")
    ingest(ws, src, batch="b1")
    src2 = tmp_path / "src2"
    put(src2, "cat.png", "chelsea.png")  # same (source_path, bytes): already ingested
    put(src2, "same cat.png", "chelsea.png")  # same bytes, another path: copied
    res = ingest(ws, src2, batch="b2")
    assert res.copied == ["same cat.png"] and res.already_ingested == ["cat.png"]
    (row,) = read_manifest(ws, "b2")
    assert row["sha256"] == sha(DATA / "chelsea.png") and row["ingest_seq"] == 2


def test_non_images_and_hidden_files_are_not_copied(ws, tmp_path):
    src = tmp_path / "src"
    put(src, "keep.png", "camera.png")
    put(src, "UPPER.JPG", "rocket.jpg")
    put(src, ".hidden.png", "coins.png")
    put(src, ".cache/inside.png", "moon.png")
    put(src, "sub/.also-hidden.jpg", "retina.jpg")
    (src / "README.txt").write_text("not an image")
    (src / "notes.md").write_text("# notes")
    (src / "png").write_bytes((DATA / "text.png").read_bytes())  # no extension
    assert [p.relative_to(src).as_posix() for p in list_image_files(src)] == ["UPPER.JPG", "keep.png"]
    res = ingest(ws, src, batch="b1")
    assert res.copied == ["UPPER.JPG", "keep.png"] and res.skipped == []
    assert files_under(ws.inbox / "b1") == ["UPPER.JPG", "keep.png"]


def test_single_file_source(ws, tmp_path):
    f = put(tmp_path / "src" / "deep", "one.png", "horse.png")
    res = ingest(ws, f, batch="single")
    assert res.copied == ["one.png"]
    assert read_manifest(ws, "single")[0]["origin_path"] == str(f)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "-dash", "x" * 129, "sp ace"])
def test_invalid_batch_name_raises(ws, tmp_path, name):
    src = tmp_path / "src"
    put(src, "a.png", "coffee.png")
    with pytest.raises(WorkspaceError, match="invalid batch name") as exc:
        ingest(ws, src, batch=name)
    assert repr(name) in str(exc.value)
    assert files_under(ws.inbox) == [] and not (ws.root / "x").exists()
    assert list((ws.state / "ingest").glob("*.jsonl")) == []
    assert ws.batches() == []


def test_empty_batch_name_raises(ws, tmp_path):
    src = tmp_path / "src"
    put(src, "a.png", "coffee.png")
    with pytest.raises(WorkspaceError, match="invalid batch name ''"):
        ingest(ws, src, batch="")  # actually returns IngestResult(batch='YYYYmmdd-HHMMSS', copied=['a.png'])


def test_reused_batch_with_different_bytes_at_same_path_is_skipped(ws, tmp_path):
    src = tmp_path / "src"
    f = put(src, "img.png", "astronaut.png")
    ingest(ws, src, batch="b1")
    shutil.copyfile(DATA / "coffee.png", f)  # new bytes, same source path
    res = ingest(ws, src, batch="b1")
    assert res.copied == [] and res.already_ingested == []
    assert res.skipped == [
        ("img.png", "batch b1 already holds different bytes at this source path; ingest into a new batch")
    ]
    assert (ws.inbox / "b1" / "img.png").read_bytes() == (DATA / "astronaut.png").read_bytes()
    assert len(read_manifest(ws, "b1")) == 1
    # a new batch takes it
    assert ingest(ws, src, batch="b2").copied == ["img.png"]
    assert (ws.inbox / "b2" / "img.png").read_bytes() == (DATA / "coffee.png").read_bytes()


def test_ingest_seq_increases_across_batches(ws, tmp_path):
    s1, s2, s3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    put(s1, "a.png", "astronaut.png")
    put(s1, "b.png", "coffee.png")
    put(s2, "c.png", "chelsea.png")
    put(s3, "d.png", "camera.png")
    ingest(ws, s1, batch="zz-first")
    ingest(ws, s2, batch="aa-second")
    ingest(ws, s3, batch="zz-first")  # appended to the first batch later on
    assert [r["ingest_seq"] for r in read_manifest(ws, "zz-first")] == [1, 2, 4]
    assert [r["ingest_seq"] for r in read_manifest(ws, "aa-second")] == [3]
    assert ws.batches() == ["zz-first", "aa-second"]  # ingest order, not name order
    lines = ws.manifest_path("zz-first").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["source_path"] for x in lines] == ["a.png", "b.png", "d.png"]


def test_missing_source_raises_naming_it(ws, tmp_path):
    missing = tmp_path / "nowhere" / "photos"
    with pytest.raises(WorkspaceError) as exc:
        ingest(ws, missing, batch="b1")
    assert str(exc.value) == f"{missing}: no such file or folder"
    assert ws.batches() == []


def test_raw_images_in_worker_processes_match_one_process(ws, tmp_path):
    """scan_batch(workers=2) (ingest scaling, docs/performance.md) writes the same rows, in the same order,
    as the one-process scan: ids, sizes, hashes, duplicates and a rejected file alike."""
    from labelloop import tables
    from labelloop.tables.schemas import IMAGES

    src = tmp_path / "src"
    for i, photo in enumerate(["astronaut.png", "coffee.png", "rocket.jpg", "chelsea.png", "coffee.png"]):
        put(src, f"{i}-{photo}", photo)
    (src / "9-broken.jpg").write_bytes((DATA / "rocket.jpg").read_bytes()[:2000])
    ingest(ws, src, "one")
    ingest(ws, src, "two")  # same bytes under the same names: a no-op, so copy them by hand
    shutil.copytree(ws.batch_dir("one"), ws.batch_dir("two"), dirs_exist_ok=True)
    a, b = scan_batch(ws, "one"), scan_batch(ws, "two", workers=2)
    rows = {n: tables.read_rows(repo.images_path(ws, n), IMAGES) for n in ("one", "two")}
    keys = ("source_path", "image_id", "width", "height", "phash", "status", "reject_reason")
    assert [[r[k] for k in keys] for r in rows["one"]] == [[r[k] for k in keys] for r in rows["two"]]
    assert a["ok"] == b["ok"] == 5 and a["rejected"] == b["rejected"] == 1 and a["duplicates"] == 1
    assert b["duplicates"] == 5  # every ok file of batch two repeats batch one's bytes


def test_batch_name_with_a_final_newline_is_refused_and_a_long_name_says_the_limit(ws, tmp_path):
    """`$` in the old check matched before a final newline: 'nl\n' made inbox/nl\n/ and such a
    partition. A 300-letter name was refused as if it had a bad character."""
    src = tmp_path / "src"
    put(src, "a.png", "coffee.png")
    with pytest.raises(WorkspaceError, match="invalid batch name 'nl\\\\n'"):
        ingest(ws, src, batch="nl\n")
    with pytest.raises(WorkspaceError, match="300 characters, at most 128"):
        ingest(ws, src, batch="x" * 300)
    assert files_under(ws.inbox) == [] and ws.batches() == []
