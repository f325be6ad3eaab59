"""CVAT for images 1.1 files from datumaro 1.13.12 (the format library CVAT's exports build on),
against labelloop's CVAT reader and writer. The files were made once in a throwaway virtualenv
(``tests/fixtures/cvat-datumaro-1.13.12/README.md``); datumaro is not a labelloop dependency."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import skimage

from labelloop.formats.cvat.reader import parse_cvat
from labelloop.formats.cvat.writer import CvatFormatError
from labelloop.geometry.masks import decode_rle, encode_rle, mask_iou, polygons_to_rle
from labelloop.review.importer import import_review
from support.helpers import FIXTURES

FIX = FIXTURES / "cvat-datumaro-1.13.12"
SK = Path(skimage.__file__).parent / "data"
CATS = ["person", "face", "cat"]
VERSION = "2026-11-29T12:00:00+00:00"


def images() -> list[dict]:
    sizes = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
    return [{"image_id": hashlib.sha256((SK / n).read_bytes()).hexdigest(), "uri": f"inbox/b1/photos/{n}",
             "source_path": f"photos/{n}", "width": w, "height": h, "status": "ok", "duplicate_of": None}
            for n, (w, h) in sizes.items()]


def test_datumaro_file_without_a_version_time_is_refused_whole():
    data = (FIX / "datumaro_export" / "default.xml").read_bytes()
    with pytest.raises(CvatFormatError, match=r"default\.xml: <meta> has no <updated> or <dumped> time.*datumaro"):
        parse_cvat(data, where="default.xml")


def test_datumaro_cvat_export_imports_boxes_polygon_and_mask():
    data = (FIX / "datumaro_export" / "default.xml").read_bytes()
    recs, meta = parse_cvat(data, where="default.xml", updated_at=VERSION)
    assert meta["updated"] == VERSION and [r["error"] for r in recs] == [None, None, None]
    imgs = images()
    res = import_review(recs, file_name="default.xml", import_sha256=hashlib.sha256(data).hexdigest(),
                        source="cvat/datumaro", images=imgs, exported=[], known_review_keys=set(), categories=CATS)
    assert res["rejects"] == []
    assert len(res["reviews"]) == 3 and {r["reviewed_at"] for r in res["human_labels"]} == {VERSION}
    by_image: dict[str, list[dict]] = {}
    for row in res["human_labels"]:
        by_image.setdefault(row["image_id"], []).append(row)
    astro, chelsea, coffee = (by_image[i["image_id"]] for i in imgs)
    # boxes: written by datumaro with 2 decimals
    assert sorted((r["category"], r["occluded"]) for r in astro) == [("face", True), ("person", False)]
    boxes = {r["category"]: r["bbox"] for r in astro}
    assert boxes["person"] == pytest.approx([20.12, 15.46, 365.79, 511.50], abs=0.01)
    assert boxes["face"] == pytest.approx([176.0, 55.5, 274.25, 180.12], abs=0.01)
    assert all(r["mask"] is None and r["action"] == "added" for r in astro)
    # polygon -> mask (pycocotools rasterization), box = the polygon's extent
    (cat,) = chelsea
    poly = [60.0, 40.0, 400.0, 40.0, 400.0, 290.0, 230.5, 200.25, 60.0, 290.0]
    assert cat["category"] == "cat" and cat["bbox"] == pytest.approx([60, 40, 400, 290], abs=0.01)
    assert mask_iou(cat["mask"], polygons_to_rle([poly], 300, 451)) == 1.0
    # mask + box in one group: one object; datumaro's full-image row-major RLE decodes exactly
    (obj,) = coffee
    want = np.load(FIX / "coffee_mask.npy")
    assert np.array_equal(decode_rle(obj["mask"]).astype(bool), want)
    ys, xs = np.nonzero(want)
    assert obj["bbox"] == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=0.01)


def _labelloop_export():
    spec = importlib.util.spec_from_file_location("labelloop_export_fixture", FIX / "labelloop_export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_datumaro_reads_our_export_as_we_wrote_it():
    """The committed file datumaro read is what labelloop writes today, and datumaro's reading
    (datumaro_reads_labelloop.txt, printed by make_fixture.py) has our boxes, scores and mask."""
    assert (FIX / "labelloop_export" / "annotations.xml").read_bytes() == _labelloop_export().build()
    lines = (FIX / "datumaro_reads_labelloop.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("datumaro reads 3 items") and "['person', 'face', 'cat']" in lines[0]
    anns = [json.loads(line) for line in lines if line.startswith("  ")]
    boxes = {(a["label"], round(a["attributes"]["score"], 2)): a["points"] for a in anns if a["type"] == "bbox"}
    assert boxes == {("face", 0.62): [176.0, 55.5, 274.25, 180.12], ("person", 0.42): [20.12, 15.46, 365.79, 511.5],
                     ("cat", 0.8): [60.0, 40.0, 400.0, 290.0], ("cat", 0.7): [120.0, 90.0, 480.0, 330.0]}
    (mask,) = [a for a in anns if a["type"] == "mask"]
    want = np.load(FIX / "coffee_mask.npy")
    ys, xs = np.nonzero(want)
    assert mask["label"] == "cat" and mask["shape"] == [400, 600] and mask["area"] == int(want.sum())
    assert mask["extent_xyxy"] == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    assert mask["area"] == int(decode_rle(encode_rle(want)).sum())
    # datumaro 1.13 has no CVAT skeletons: our <skeleton>'s points arrive as unlabeled points
    points = [a for a in anns if a["type"] == "points"]
    assert [p["label"] for p in points] == [None, None, None]
    assert [p["attributes"]["occluded"] for p in points] == [False, True, False]


@pytest.mark.parametrize("old, new, match", [
    # a declared 100000x100000 image with a 1-pixel mask: was 10 GB allocated before any size check
    ('<image id="0" name="inbox/b1/photos/astronaut.png" width="512" height="512">',
     '<image id="0" name="inbox/b1/photos/astronaut.png" width="100000" height="100000">'
     '<mask label="cat" rle="0, 1" left="0" top="0" width="1" height="1"/>', "larger than any image"),
    ('width="512" height="512">', 'width="0" height="512">', "not positive"),
    ('<box label="person"', '<polygon label="cat" points="0,0;100000000,0;0,100000000"/><box label="person"',
     "vertex far outside"),  # was: gigabytes in pycocotools, then a crash
])
def test_hostile_sizes_and_polygons_in_a_datumaro_file_reject_their_image_alone(old, new, match):
    data = (FIX / "datumaro_export" / "default.xml").read_text().replace(old, new, 1).encode()
    recs, _ = parse_cvat(data, where="default.xml", updated_at=VERSION)
    res = import_review(recs, file_name="default.xml", import_sha256=hashlib.sha256(data).hexdigest(),
                        source="cvat/datumaro", images=images(), exported=[], known_review_keys=set(), categories=CATS)
    (rej,) = res["rejects"]
    assert "astronaut.png" in rej["item"] + rej["reason"] and match in rej["reason"], rej
    assert len(res["reviews"]) == 2  # chelsea and coffee import


def test_an_unknown_xml_encoding_is_a_format_error_naming_the_file():
    """Was: LookupError out of the parser, which import_file does not catch (the inbox import failed)."""
    data = (FIX / "datumaro_export" / "default.xml").read_bytes().replace(b'encoding="utf-8"', b'encoding="abc"', 1)
    with pytest.raises(CvatFormatError, match=r"^default\.xml: not readable XML \(unknown encoding: abc\)"):
        parse_cvat(data, where="default.xml", updated_at=VERSION)


def test_a_mask_run_beyond_int64_rejects_its_image_alone():
    """Was: OverflowError out of numpy, which import_file does not catch (the inbox import failed)."""
    text = (FIX / "datumaro_export" / "default.xml").read_text()
    data = text.replace('rle="54300, ', 'rle="99999999999999999999, ', 1).encode()
    recs, _ = parse_cvat(data, where="default.xml", updated_at=VERSION)
    assert [r["error"] for r in recs][:2] == [None, None]
    assert "mask rle runs must lie in 0.." in recs[2]["error"]


def test_a_datumaro_file_read_from_disk_takes_its_mtime_as_version(tmp_path):
    """No <updated>/<dumped>: read_review_file (the inbox and ``import-review`` path) uses the
    file's mtime, and ``import-review`` keeps that mtime on the inbox copy."""
    import os
    import shutil

    from labelloop.review.files import read_review_file
    from labelloop.workspace.layout import Workspace
    from support.helpers import cli

    src = tmp_path / "default.xml"
    shutil.copyfile(FIX / "datumaro_export" / "default.xml", src)
    os.utime(src, (1_700_000_000, 1_700_000_000))
    got = read_review_file(src)
    assert got["format"] == "cvat" and len(got["records"]) == 3
    assert {r["updated_at"] for r in got["records"]} == {"2023-11-14T22:13:20+00:00"}
    ws = tmp_path / "ws"
    cli(ws, "init")
    cli(ws, "import-review", str(src), ok=False)  # its images are not in this workspace: rejected per image
    assert (Workspace.at(ws).review_inbox / "default.xml").stat().st_mtime == 1_700_000_000
