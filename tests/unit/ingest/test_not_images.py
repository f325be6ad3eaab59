"""Ingest counts and names what it leaves out for a non-image extension (labelloop.ingest.files,
``labelloop ingest``), on real files in a temporary inbox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from labelloop.ingest.files import IngestResult, ingest, list_image_files, list_not_images
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.helpers import cli, skimage_data

DATA = skimage_data()


def incoming(root: Path) -> Path:
    """Two photos among a camera card's other files: 2 .txt, 1 .xml (one upper-case), 1 file
    without extension, hidden files and folders (not counted) and a symlink (not a regular file)."""
    src = root / "incoming"
    (src / "sub").mkdir(parents=True)
    (src / ".cache").mkdir()
    shutil.copyfile(DATA / "astronaut.png", src / "astronaut.png")
    shutil.copyfile(DATA / "rocket.jpg", src / "sub" / "rocket.jpg")
    (src / "README.txt").write_text("photos of the launch\n")
    (src / "sub" / "notes.TXT").write_text("second roll\n")
    (src / "sub" / "meta.XML").write_text("<meta/>\n")
    (src / "LICENSE").write_text("CC-BY\n")
    (src / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (src / ".cache" / "index.db").write_bytes(b"sqlite")
    os.symlink(src / "README.txt", src / "link.md")
    return src


def test_not_images_are_counted_by_extension(tmp_path):
    src = incoming(tmp_path)
    assert [p.relative_to(src).as_posix() for p in list_image_files(src)] == ["astronaut.png", "sub/rocket.jpg"]
    assert list_not_images(src) == ["LICENSE", "README.txt", "sub/meta.XML", "sub/notes.TXT"]
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    res = ingest(ws, src, batch="b1")
    assert res.copied == ["astronaut.png", "sub/rocket.jpg"] and res.skipped == []
    assert res.not_images == ["LICENSE", "README.txt", "sub/meta.XML", "sub/notes.TXT"]
    assert res.not_image_extensions() == {".txt": 2, "(no extension)": 1, ".xml": 1}
    assert res.not_images_line() == "skipped 4 files that are not images: .txt (2), (no extension) (1), .xml (1)"
    assert not (ws.inbox / "b1" / "README.txt").exists() and not (ws.inbox / "b1" / "LICENSE").exists()
    # a second ingest of the same folder still says what it left out
    again = ingest(ws, src, batch="b1")
    assert again.already_ingested == ["astronaut.png", "sub/rocket.jpg"] and len(again.not_images) == 4


def test_nothing_left_out_says_nothing(tmp_path):
    src = tmp_path / "only-photos"
    src.mkdir()
    shutil.copyfile(DATA / "coffee.png", src / "coffee.png")
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    res = ingest(ws, src, batch="b1")
    assert res.not_images == [] and res.not_image_extensions() == {} and res.not_images_line() == ""
    # one file given by name is ingested whatever its extension: nothing left out
    assert ingest(ws, src / "coffee.png", batch="b2").not_images == []


@pytest.mark.parametrize("names, line", [
    (["a.txt"], "skipped 1 file that is not an image: .txt (1)"),
    (["x/a.xml", "b.txt", "c.xml"], "skipped 3 files that are not images: .xml (2), .txt (1)"),
    (["archive.tar.gz", "data/x.CSV"], "skipped 2 files that are not images: .csv (1), .gz (1)"),
])
def test_not_images_line(names, line):
    assert IngestResult(batch="b", not_images=names).not_images_line() == line


def test_cli_ingest_line_counts_and_names_them(tmp_path):
    src = incoming(tmp_path)
    root = tmp_path / "ws"
    cli(root, "init")
    out = cli(root, "ingest", str(src), "--batch", "b1").output
    assert "batch b1: 2 copied, 0 already ingested, 4 skipped" in out
    assert "  skipped 4 files that are not images: .txt (2), (no extension) (1), .xml (1)" in out.splitlines()
    assert "0 skipped" not in out
