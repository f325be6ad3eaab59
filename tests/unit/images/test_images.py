"""labelloop.images.files on real photos shipped with scikit-image, matplotlib and scikit-learn."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage
import sklearn
from PIL import Image, ImageEnhance, ImageFile

from labelloop.images.files import ImageError, exif_orientation, inspect_image, load_rgb, save_release_copy, sha256_file
from labelloop.images.phash import assign_duplicates, hamming

SK = Path(skimage.__file__).parent / "data"
HOPPER = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
CHINA = Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg"
MAXPX = 50_000_000


def rgb_array(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def code(row: dict) -> str:
    return row["reject_reason"].split(": ", 1)[0]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def oriented_chelsea(tmp_path: Path, orientation: int) -> Path:
    p = tmp_path / f"chelsea_o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(SK / "chelsea.png").convert("RGB").save(p, quality=95, exif=exif)
    return p


def row_for(path: Path, seq: int, **kw) -> dict:
    return dict(inspect_image(path, MAXPX), source_path=path.name, ingest_seq=seq, **kw)


def test_mixed_batch_bad_files_do_not_affect_good_ones(tmp_path):
    rocket = (SK / "rocket.jpg").read_bytes()
    files = {
        "astronaut.png": (SK / "astronaut.png").read_bytes(),
        "truncated.jpg": rocket[: len(rocket) // 2],
        "empty.png": b"",
        "x.jpg": b"this is a text file, not a photo\n",
        "hopper.jpg": HOPPER.read_bytes(),
        "çhat été 1.png": (SK / "chelsea.png").read_bytes(),
        "rocket.jpg": rocket,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rows = {name: inspect_image(tmp_path / name, MAXPX) for name in files}

    assert code(rows["truncated.jpg"]) == "truncated"
    assert rows["truncated.jpg"]["format"] == "JPEG" and rows["truncated.jpg"]["phash"] is None
    assert rows["empty.png"]["reject_reason"] == "empty: zero-byte file"
    assert rows["empty.png"]["image_id"] == hashlib.sha256(b"").hexdigest()
    assert rows["empty.png"]["bytes"] == 0
    assert code(rows["x.jpg"]) == "not an image" and rows["x.jpg"]["bytes"] == 33
    for name in ("truncated.jpg", "empty.png", "x.jpg"):
        assert rows[name]["status"] == "rejected"
        assert rows[name]["image_id"] == hashlib.sha256(files[name]).hexdigest()
    expected = {"astronaut.png": (512, 512, "PNG", "RGB"), "hopper.jpg": (512, 600, "JPEG", "RGB"),
                "çhat été 1.png": (451, 300, "PNG", "RGB"), "rocket.jpg": (640, 427, "JPEG", "RGB")}
    for name, (w, h, fmt, mode) in expected.items():
        row = rows[name]
        assert (row["width"], row["height"], row["format"], row["mode"]) == (w, h, fmt, mode)
        assert row["status"] == "ok" and row["reject_reason"] is None
        assert row["exif_orientation"] == 1 and len(row["phash"]) == 16
        assert row["bytes"] == len(files[name])
        assert row["image_id"] == sha256_file(tmp_path / name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_load_rgb_raises_image_error_naming_the_file(tmp_path):
    p = tmp_path / "half rocket.jpg"
    data = (SK / "rocket.jpg").read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="half rocket.jpg: truncated"):
        load_rgb(p)
    with pytest.raises(ImageError, match="unreadable"):
        load_rgb(tmp_path / "missing.png")


def test_unreadable_paths(tmp_path):
    row = inspect_image(tmp_path / "missing.jpg", MAXPX)
    assert row["status"] == "rejected" and code(row) == "unreadable"
    assert row["image_id"] is None and row["bytes"] is None
    assert code(inspect_image(tmp_path, MAXPX)) == "unreadable"  # a directory
    if os.geteuid() != 0:  # root reads anything
        p = tmp_path / "locked.png"
        shutil.copy(SK / "astronaut.png", p)
        p.chmod(0)
        assert code(inspect_image(p, MAXPX)) == "unreadable"


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.open(SK / "chelsea.png").convert("RGB").convert("CMYK").save(p, quality=95)
    row = inspect_image(p, MAXPX)
    assert (row["status"], row["mode"], row["width"], row["height"]) == ("ok", "CMYK", 451, 300)
    rgb = load_rgb(p)
    assert rgb.mode == "RGB" and rgb.size == (451, 300)
    diff = np.abs(np.asarray(rgb, np.int16) - rgb_array(SK / "chelsea.png"))
    assert diff.mean() < 10


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    camera = np.asarray(Image.open(SK / "camera.png"))
    p = tmp_path / "camera16.png"
    Image.fromarray(camera.astype(np.uint16) * 257).save(p)
    row = inspect_image(p, MAXPX)
    assert (row["status"], row["mode"], row["width"], row["height"]) == ("ok", "I;16", 512, 512)
    out = np.asarray(load_rgb(p))
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    assert abs(out.mean() - camera.mean()) < 2
    mid = tmp_path / "mid.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(mid)
    assert abs(int(np.asarray(load_rgb(mid))[0, 0, 0]) - 128) <= 1


def test_float_tiff_in_unit_range(tmp_path):
    camera = np.asarray(Image.open(SK / "camera.png"))
    p = tmp_path / "camera_f.tif"
    Image.fromarray((camera / 255.0).astype(np.float32)).save(p)
    row = inspect_image(p, MAXPX)
    assert (row["status"], row["format"], row["mode"]) == ("ok", "TIFF", "F")
    assert abs(np.asarray(load_rgb(p)).mean() - camera.mean()) < 1


def test_transparency_composited_on_white(tmp_path):
    chelsea = Image.open(SK / "chelsea.png").convert("RGB")
    pal = chelsea.quantize(255)  # indices 0..254; 255 (black) becomes the transparent entry
    pal.putpalette(pal.getpalette()[: 255 * 3] + [0, 0, 0])
    pal.paste(255, (0, 0, 100, 80))
    p = tmp_path / "palette.png"
    pal.save(p, transparency=255)
    row = inspect_image(p, MAXPX)
    assert (row["status"], row["mode"], row["width"], row["height"]) == ("ok", "P", 451, 300)
    out = np.asarray(load_rgb(p))
    assert (out[:80, :100] == 255).all()
    assert out[80:, 100:].mean() < 200  # the cat is still there

    rgba = chelsea.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 255))
    rgba.paste((0, 0, 0, 0), (200, 100, 250, 150))
    q = tmp_path / "rgba.png"
    rgba.save(q)
    assert inspect_image(q, MAXPX)["mode"] == "RGBA"
    out = np.asarray(load_rgb(q))
    assert (out[100:150, 200:250] == 255).all()
    assert np.array_equal(out[:100], np.asarray(chelsea)[:100])


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation(tmp_path, orientation):
    p = oriented_chelsea(tmp_path, orientation)
    row = inspect_image(p, MAXPX)
    assert (row["width"], row["height"], row["exif_orientation"]) == (300, 451, orientation)
    with Image.open(p) as im:
        assert exif_orientation(im) == orientation
        assert im.size == (451, 300)  # stored landscape
    stored = rgb_array(p)
    shown = np.asarray(load_rgb(p), np.int16)
    assert shown.shape == (451, 300, 3)
    if orientation == 6:  # rotate 90 degrees clockwise to display
        assert np.array_equal(shown[0, 0], stored[-1, 0])  # top-left shows stored bottom-left
        assert np.array_equal(shown, np.rot90(stored, k=-1))
    else:  # 8: rotate 90 degrees counter-clockwise
        assert np.array_equal(shown[0, 0], stored[0, -1])  # top-left shows stored top-right
        assert np.array_equal(shown, np.rot90(stored, k=1))


def test_header_claiming_huge_size_is_rejected_fast(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    t0 = time.perf_counter()
    row = inspect_image(p, max_pixels=MAXPX)
    assert time.perf_counter() - t0 < 2
    assert row["status"] == "rejected" and code(row) == "too many pixels"
    assert row["image_id"] == hashlib.sha256(data).hexdigest() and row["bytes"] == len(data)
    assert row["format"] == row["phash"] == row["width"] is None


def test_max_pixels_and_pil_bomb_warning(tmp_path, monkeypatch):
    row = inspect_image(SK / "astronaut.png", max_pixels=512 * 512 - 1)
    assert row["reject_reason"] == "too many pixels: 512x512 = 262144 pixels > max_pixels 262143"
    assert (row["format"], row["mode"]) == ("PNG", "RGB")
    assert inspect_image(SK / "astronaut.png", max_pixels=512 * 512)["status"] == "ok"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # astronaut: warning, not error
    assert code(inspect_image(SK / "astronaut.png", MAXPX)) == "too many pixels"


def test_multiframe_files_use_first_frame():
    gif = inspect_image(SK / "no_time_for_that_tiny.gif", MAXPX)
    assert (gif["status"], gif["format"], gif["mode"], gif["width"], gif["height"]) == (
        "ok", "GIF", "P", 14, 25)
    tif = inspect_image(SK / "multipage.tif", MAXPX)
    assert (tif["status"], tif["format"], tif["mode"], tif["width"], tif["height"]) == (
        "ok", "TIFF", "L", 10, 15)
    assert load_rgb(SK / "no_time_for_that_tiny.gif").size == (14, 25)


def test_exact_duplicates(tmp_path):
    shutil.copy(SK / "coffee.png", tmp_path / "a.png")
    shutil.copy(SK / "coffee.png", tmp_path / "copy of a.png")
    a, b = row_for(tmp_path / "a.png", 1), row_for(tmp_path / "copy of a.png", 2)
    assert a["image_id"] == b["image_id"] and (a["width"], a["height"]) == (600, 400)
    out = assign_duplicates([b, a], [], max_distance=6)  # order of the batch does not matter
    assert out[0]["duplicate_of"] == "a.png" and out[0]["near_duplicate_of"] is None
    assert out[1]["duplicate_of"] is None and out[1]["near_duplicate_of"] is None
    assert "duplicate_of" not in a  # inputs untouched
    # against an earlier batch: the first file is the prior one
    c = dict(b, source_path="later/coffee.png", ingest_seq=7)
    prior = [dict(a, duplicate_of=None, near_duplicate_of=None)]
    assert assign_duplicates([c], prior, 6)[0]["duplicate_of"] == "a.png"


def test_near_duplicates_chain_and_unrelated(tmp_path):
    astro = Image.open(SK / "astronaut.png").convert("RGB")
    ImageEnhance.Brightness(astro).enhance(1.1).save(tmp_path / "bright.jpg", quality=85)
    astro.crop((8, 8, 512, 512)).save(tmp_path / "crop8.png")
    astro.crop((16, 16, 512, 512)).save(tmp_path / "crop16.png")
    shutil.copy(SK / "astronaut.png", tmp_path / "astronaut.png")
    shutil.copy(CHINA, tmp_path / "china.jpg")
    rows = [row_for(tmp_path / n, i) for i, n in enumerate(
        ["astronaut.png", "bright.jpg", "crop8.png", "crop16.png", "china.jpg"], start=1)]
    a, bright, b, c, china = rows
    assert hamming(a["phash"], bright["phash"]) <= 6
    # C is within reach of B only; B is a near duplicate of A, so C joins A's group
    assert hamming(a["phash"], b["phash"]) <= 6 and hamming(b["phash"], c["phash"]) <= 6
    assert hamming(a["phash"], c["phash"]) > 6
    assert hamming(a["phash"], china["phash"]) > 20
    out = {r["source_path"]: r for r in assign_duplicates(rows, [], max_distance=6)}
    assert out["astronaut.png"]["near_duplicate_of"] is None  # the representative
    for name in ("bright.jpg", "crop8.png", "crop16.png"):
        assert out[name]["near_duplicate_of"] == a["image_id"]
        assert out[name]["duplicate_of"] is None
    assert out["china.jpg"]["near_duplicate_of"] is None


def test_duplicate_rules_with_prior_and_rejected_rows():
    ph = {"A": "ffffffff00000000", "B": "ffffffff0000000f", "C": "ffffffff000000ff"}
    prior = [{"image_id": "a", "source_path": "old/a.png", "ingest_seq": 1, "status": "ok",
              "phash": ph["A"], "duplicate_of": None, "near_duplicate_of": None}]
    rows = [
        {"image_id": "c", "source_path": "c.png", "ingest_seq": 12, "status": "ok", "phash": ph["C"]},
        {"image_id": "b", "source_path": "b.png", "ingest_seq": 11, "status": "ok", "phash": ph["B"]},
        {"image_id": "a", "source_path": "a2.png", "ingest_seq": 13, "status": "ok",
         "phash": ph["A"]},
        {"image_id": "r", "source_path": "r.png", "ingest_seq": 10, "status": "rejected",
         "phash": None},
        {"image_id": "b", "source_path": "b_rejected.png", "ingest_seq": 9, "status": "rejected",
         "phash": None},
    ]
    assert hamming(ph["A"], ph["C"]) == 8 and hamming(ph["B"], ph["C"]) == 4
    c, b, a2, r, rej = assign_duplicates(rows, prior, max_distance=4)
    assert (b["duplicate_of"], b["near_duplicate_of"]) == (None, "a")
    assert (c["duplicate_of"], c["near_duplicate_of"]) == (None, "a")  # via b, never "b"
    assert (a2["duplicate_of"], a2["near_duplicate_of"]) == ("old/a.png", None)
    assert r["duplicate_of"] is r["near_duplicate_of"] is None
    assert rej["duplicate_of"] is rej["near_duplicate_of"] is None
    assert [x["source_path"] for x in (c, b, a2, r, rej)] == [x["source_path"] for x in rows]


def test_hamming_and_sha256(tmp_path):
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError):
        hamming("ff", "ffff")
    p = tmp_path / "big.bin"
    p.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_save_release_copy(tmp_path):
    dest = tmp_path / "release"
    rocket = SK / "rocket.jpg"
    assert save_release_copy(rocket, dest, "r1") == "r1.jpg"
    assert (dest / "r1.jpg").read_bytes() == rocket.read_bytes()
    assert save_release_copy(SK / "astronaut.png", dest, "a1") == "a1.png"
    assert (dest / "a1.png").read_bytes() == (SK / "astronaut.png").read_bytes()

    p = oriented_chelsea(tmp_path, 6)
    assert save_release_copy(p, dest, "c6") == "c6.png"
    first = (dest / "c6.png").read_bytes()
    with Image.open(dest / "c6.png") as out:
        assert (out.format, out.mode, out.size) == ("PNG", "RGB", (300, 451))
        assert exif_orientation(out) == 1 and "exif" not in out.info
        assert np.array_equal(np.asarray(out), np.asarray(load_rgb(p)))
    assert save_release_copy(p, dest, "c6") == "c6.png"
    assert (dest / "c6.png").read_bytes() == first
    assert sorted(x.name for x in dest.iterdir()) == ["a1.png", "c6.png", "r1.jpg"]  # no temps

    cmyk = tmp_path / "cmyk.jpg"
    Image.open(SK / "chelsea.png").convert("CMYK").save(cmyk)
    assert save_release_copy(cmyk, dest, "k") == "k.png"
    with pytest.raises(ImageError, match="not an image"):
        (tmp_path / "x.jpg").write_text("hello")
        save_release_copy(tmp_path / "x.jpg", dest, "x")
    assert not (dest / "x.png").exists()
