"""The perceptual hash's definition (labelloop.images.phash) on real photos, and the one-time upgrade of
hashes written by an older definition in a real workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import imagehash
import matplotlib
import pytest
import skimage
from PIL import Image

from labelloop import tables
from labelloop.images.files import inspect_image, load_rgb, phash_file
from labelloop.images.phash import HASH_INPUT_SIDE, LEGACY_METHOD, MIN_HASH_SIDE, PHASH_METHOD, hamming, hash_reduction
from labelloop.ingest.files import ingest
from labelloop.ingest.scan import scan_batch
from labelloop.tables.schemas import IMAGES
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.legacy_tables import as_legacy_table, legacy_phash

SK = Path(skimage.__file__).parent / "data"
HOPPER = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
MAXPX = 50_000_000


def test_reduction_factor_keeps_128_pixels_on_the_short_side():
    assert MIN_HASH_SIDE == 128
    assert [hash_reduction(w, h) for w, h in [(512, 512), (511, 600), (640, 427), (300, 451), (255, 4000),
                                              (127, 90), (63, 63), (1, 1), (1024, 1024), (4000, 3000)]] \
        == [4, 2, 2, 2, 1, 1, 1, 1, 8, 8]


@pytest.mark.parametrize("name,k", [("astronaut.png", 4), ("coffee.png", 2), ("camera.png", 4)])
def test_png_hash_is_phash_of_the_reduced_thumbnail(name, k):
    row = inspect_image(SK / name, MAXPX)
    rgb = load_rgb(SK / name)
    assert hash_reduction(*rgb.size) == k
    thumb = rgb.convert("L").reduce(k).resize((HASH_INPUT_SIDE, HASH_INPUT_SIDE), Image.Resampling.BILINEAR)
    assert thumb.size == (32, 32)
    assert row["phash"] == str(imagehash.phash(thumb)) == phash_file(SK / name)
    assert row["phash_method"] == PHASH_METHOD
    assert hamming(row["phash"], legacy_phash(SK / name)) <= 4  # a 32x32 resample loses what reducing drops


@pytest.mark.parametrize("path", [SK / "rocket.jpg", HOPPER, SK / "motorcycle_left.png"], ids=lambda p: p.name)
def test_hash_is_close_to_the_full_resolution_hash(path):
    assert hamming(inspect_image(path, MAXPX)["phash"], legacy_phash(path)) <= 4


def test_jpeg_dct_scaled_hash_matches_the_png_of_the_same_pixels(tmp_path):
    """A JPEG is hashed from libjpeg's 1/k decode, its lossless PNG copy from a box reduction of
    the full decode: the same picture gets (nearly) the same hash either way."""
    for name in ("chelsea.png", "astronaut.png", "coffee.png"):
        jpg, png = tmp_path / (name + ".jpg"), tmp_path / (name + ".png")
        Image.open(SK / name).convert("RGB").save(jpg, quality=92)
        load_rgb(jpg).save(png)  # the JPEG's own decoded pixels, lossless
        assert hamming(phash_file(jpg), phash_file(png)) <= 2


def test_exif_rotation_is_applied_before_hashing(tmp_path):
    src = Image.open(SK / "chelsea.png").convert("RGB")  # 451 x 300: k = 2
    paths = {}
    for o in (1, 6):
        exif = Image.Exif()
        exif[0x0112] = o
        paths[o] = tmp_path / f"o{o}.jpg"
        src.save(paths[o], quality=95, exif=exif)  # same compressed pixels, another tag
    upright, rotated = inspect_image(paths[1], MAXPX), inspect_image(paths[6], MAXPX)
    assert (rotated["width"], rotated["height"], rotated["exif_orientation"]) == (300, 451, 6)
    assert hamming(rotated["phash"], legacy_phash(paths[6])) <= 4
    assert hamming(rotated["phash"], upright["phash"]) > 16  # the displayed (rotated) picture is hashed


def test_truncated_and_tiny_jpegs_on_the_reduced_path(tmp_path):
    data = (SK / "rocket.jpg").read_bytes()  # 640 x 427: decoded at 1/2 scale
    for cut in (len(data) // 3, len(data) - 600):
        (tmp_path / "t.jpg").write_bytes(data[:cut])
        row = inspect_image(tmp_path / "t.jpg", MAXPX)
        assert row["status"] == "rejected" and row["reject_reason"].startswith("truncated: ")
        assert row["phash"] is None and row["phash_method"] is None
    Image.open(SK / "rocket.jpg").resize((60, 40)).save(tmp_path / "small.jpg")  # k = 1: full decode
    row = inspect_image(tmp_path / "small.jpg", MAXPX)
    assert (row["width"], row["height"], row["mode"], row["status"]) == (60, 40, "RGB", "ok")
    assert hamming(row["phash"], legacy_phash(tmp_path / "small.jpg")) <= 4


def test_hashes_of_an_older_definition_are_upgraded_once(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    init_workspace(ws)
    src1, src2 = tmp_path / "in1", tmp_path / "in2"
    src1.mkdir(), src2.mkdir()
    for n in ("moon.png", "retina.jpg", "coffee.png"):  # legacy and current hashes differ for the first two
        shutil.copy(SK / n, src1 / n)
    Image.open(SK / "moon.png").convert("RGB").resize((500, 500)).save(src2 / "moon-small.jpg", quality=80)
    ingest(ws, src1, "b1")
    scan_batch(ws, "b1")
    table1 = repo.images_path(ws, "b1")
    as_legacy_table(table1)
    before = {r["source_path"]: r for r in tables.read_rows(table1, IMAGES)}
    assert {r["phash_method"] for r in before.values()} == {None}  # read back: the column is null
    for n in ("moon.png", "retina.jpg"):
        assert before[n]["phash"] != phash_file(SK / n)
    (ws.root / before["coffee.png"]["uri"]).unlink()  # an image gone from the inbox since

    ingest(ws, src2, "b2")
    out = scan_batch(ws, "b2")
    assert out["rehashed_images"] == 2 and out["near_duplicates"] == 1
    assert len(out["rehash_problems"]) == 1 and out["rehash_problems"][0].startswith("b1/coffee.png: ")
    after = {r["source_path"]: r for r in tables.read_rows(table1, IMAGES)}
    for n in ("moon.png", "retina.jpg"):
        assert (after[n]["phash"], after[n]["phash_method"]) == (phash_file(SK / n), PHASH_METHOD)
    assert (after["coffee.png"]["phash"], after["coffee.png"]["phash_method"]) == (before["coffee.png"]["phash"], None)
    for n, r in after.items():  # nothing else of the earlier batch changed
        assert {k: v for k, v in r.items() if not k.startswith("phash")} == \
            {k: v for k, v in before[n].items() if not k.startswith("phash")}
    b2 = tables.read_rows(repo.images_path(ws, "b2"), IMAGES)[0]
    assert b2["near_duplicate_of"] == after["moon.png"]["image_id"]
    assert b2["phash_method"] == PHASH_METHOD and LEGACY_METHOD != PHASH_METHOD

    again = scan_batch(ws, "b2")  # only the file that is gone is tried again
    assert again["rehashed_images"] == 0 and len(again["rehash_problems"]) == 1
