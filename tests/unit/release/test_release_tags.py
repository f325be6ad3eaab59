"""The release's image-level labels (``level: tag`` categories): ``image_labels.csv`` and the
``image_labels`` column of images.parquet, checked on write like every release file."""

from __future__ import annotations

import csv
import io

from labelloop import tables
from labelloop.release.build import IMAGE_LABELS_FILE
from labelloop.release.check import validate_release
from labelloop.tables.schemas import RELEASE_IMAGES
from support.release_fixtures import CATS, build_files, photos, release_inputs  # noqa: F401 (photos is a fixture)


def test_image_labels_csv_and_column(photos, tmp_path):
    root, images = photos
    inputs = release_inputs(images)
    ids = sorted(r["image_id"] for r in inputs.resolved)
    # two reviewed images with tag answers (one with none ticked); the others have no tag answer
    inputs.tag_categories = ["outdoor", "indoor"]
    inputs.tags = {ids[0]: ["outdoor", "indoor"], ids[1]: []}
    out = tmp_path / "rel"
    manifest = build_files(root, out, inputs, tmp_path / "reg")
    validate_release(out, CATS)
    assert IMAGE_LABELS_FILE in manifest["files"]
    rows = list(csv.DictReader(io.StringIO((out / IMAGE_LABELS_FILE).read_text(encoding="utf-8"))))
    released = {r["image_id"]: r for r in tables.read_rows(out / "images.parquet", RELEASE_IMAGES)}
    assert [(r["image_id"], r["labels"]) for r in rows] == [(ids[0], "indoor;outdoor"), (ids[1], "")]
    for r in rows:
        assert (r["file_name"], r["split"]) == (released[r["image_id"]]["file_name"], released[r["image_id"]]["split"])
        assert (out / r["file_name"]).is_file()
    assert {i: r["image_labels"] for i, r in released.items()} == {
        ids[0]: "indoor;outdoor", ids[1]: "", ids[2]: None, ids[3]: None}


def test_no_tag_category_no_file(photos, tmp_path):
    root, images = photos
    out = tmp_path / "rel"
    manifest = build_files(root, out, release_inputs(images), tmp_path / "reg")
    assert IMAGE_LABELS_FILE not in manifest["files"] and not (out / IMAGE_LABELS_FILE).exists()
