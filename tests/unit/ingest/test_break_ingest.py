"""Bad and unusual input through image inspection, ingest and raw_images (real photos from
skimage's data, variants made with Pillow or by editing bytes): every file gets an ok row with
the right facts or a rejected row with its reason, no batch fails, nothing stored is corrupted."""

from __future__ import annotations

import os
import shutil
import struct

import pytest
from PIL import Image, ImageOps

from labelloop import tables
from labelloop.images.files import IN_MEMORY_BYTES, ImageError, inspect_image, phash_file, sha256_file
from labelloop.images.phash import PHASH_METHOD, hamming
from labelloop.ingest.files import ingest, list_image_files
from labelloop.ingest.scan import scan_batch
from labelloop.reprocess import stale_stage
from labelloop.tables.schemas import IMAGES
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.helpers import FIXTURES, skimage_data  # noqa: E402
from support.legacy_tables import as_legacy_table  # noqa: E402

SK = skimage_data()
FIX = FIXTURES / "jpeg"
MAXPX = 50_000_000


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.open(SK / "chelsea.png").convert("RGB")  # 451 x 300: JPEGs decoded at 1/4 scale


@pytest.fixture
def ws(tmp_path) -> Workspace:
    w = Workspace.at(tmp_path / "ws")
    init_workspace(w)
    return w


def _rows(ws: Workspace, batch: str) -> dict[str, dict]:
    return {r["source_path"]: r for r in tables.read_rows(repo.images_path(ws, batch), IMAGES)}


# ---- JPEG variants on the DCT-scaled path ------------------------------------------------------
@pytest.mark.parametrize("variant", ["progressive", "restart-blocks", "restart-rows", "444", "422", "420", "grey",
                                     "cmyk-adobe", "mpo", "trailing-garbage", "two-concatenated"])
def test_jpeg_variants_hash_as_the_baseline(tmp_path, chelsea, variant):
    base = tmp_path / "base.jpg"
    chelsea.save(base, quality=92)
    p = tmp_path / f"{variant}.jpg"
    kw = {"progressive": {"progressive": True}, "restart-blocks": {"restart_marker_blocks": 1},
          "restart-rows": {"restart_marker_rows": 1}, "444": {"subsampling": 0}, "422": {"subsampling": 1},
          "420": {"subsampling": 2}}.get(variant)
    mode, fmt = {"grey": ("L", "JPEG"), "cmyk-adobe": ("CMYK", "JPEG"), "mpo": ("RGB", "MPO")}.get(variant, ("RGB", "JPEG"))
    if kw is not None:
        chelsea.save(p, quality=92, **kw)
    elif variant == "grey":
        chelsea.convert("L").save(p, quality=92)
    elif variant == "cmyk-adobe":  # Pillow writes Adobe APP14 and inverted CMYK; the plugin undoes it
        chelsea.convert("CMYK").save(p, quality=92)
        assert b"Adobe" in p.read_bytes()
    elif variant == "mpo":
        chelsea.save(p, format="MPO", save_all=True, append_images=[chelsea.rotate(180)], quality=92)
    elif variant == "trailing-garbage":
        p.write_bytes(base.read_bytes() + b"GARBAGE" * 1000)
    else:
        p.write_bytes(base.read_bytes() * 2)
    row, ref = inspect_image(p, MAXPX), inspect_image(base, MAXPX)
    assert (row["status"], row["width"], row["height"], row["format"], row["mode"]) == ("ok", 451, 300, fmt, mode)
    assert hamming(row["phash"], ref["phash"]) <= 2 and row["phash"] == phash_file(p)


def test_arithmetic_coded_jpeg_decodes_to_the_huffman_pixels(tmp_path):
    arith, huff = FIX / "chelsea-226x150-arithmetic.jpg", FIX / "chelsea-226x150-huffman.jpg"
    assert b"\xff\xc9" in arith.read_bytes()  # SOF9: arithmetic coding
    a, h = inspect_image(arith, MAXPX), inspect_image(huff, MAXPX)
    assert a["status"] == "ok" and (a["width"], a["height"], a["phash"]) == (226, 150, h["phash"])
    data = arith.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):  # libjpeg calls it a broken stream, not truncated
        (tmp_path / "cut.jpg").write_bytes(data[:cut])
        assert inspect_image(tmp_path / "cut.jpg", MAXPX)["reject_reason"].startswith(("corrupt: ", "truncated: "))


def test_12_bit_jpeg_is_an_unsupported_format_not_corrupt(tmp_path, chelsea):
    """Pillow reads only 8-bit JPEG; a 12-bit (SOF1, precision 12) header is refused by its plugin."""
    chelsea.save(tmp_path / "b.jpg", quality=90)
    d = bytearray((tmp_path / "b.jpg").read_bytes())
    i = d.find(b"\xff\xc0")
    d[i + 1], d[i + 4] = 0xC1, 12
    (tmp_path / "p12.jpg").write_bytes(d)
    row = inspect_image(tmp_path / "p12.jpg", MAXPX)
    assert row["status"] == "rejected" and row["reject_reason"] == "unsupported format: JPEG: cannot handle 12-bit layers"
    d[i + 4] = 0  # a damaged precision byte stays "corrupt"
    (tmp_path / "p0.jpg").write_bytes(d)
    assert inspect_image(tmp_path / "p0.jpg", MAXPX)["reject_reason"].startswith("corrupt: JPEG: cannot handle 0-bit")


@pytest.mark.parametrize("where", ["header", "sos+20", "first-scan", "last-10", "no-eoi", "progressive-half",
                                   "progressive-no-eoi", "app1-length-past-end"])
def test_truncated_jpegs_are_rejected_on_the_scaled_path(tmp_path, chelsea, where):
    chelsea.save(tmp_path / "b.jpg", quality=92, progressive=where.startswith("progressive"))
    data = (tmp_path / "b.jpg").read_bytes()
    sos = data.index(b"\xff\xda")
    cut = {"header": 100, "sos+20": sos + 20, "first-scan": (sos + len(data)) // 2, "last-10": len(data) - 10,
           "no-eoi": len(data) - 2, "progressive-half": len(data) // 2, "progressive-no-eoi": len(data) - 2}
    if where == "app1-length-past-end":
        out = data[:2] + b"\xff\xe1" + struct.pack(">H", 60000) + b"Exif\0\0" + data[2:]
    else:
        out = data[:cut[where]]
    (tmp_path / "t.jpg").write_bytes(out)
    row = inspect_image(tmp_path / "t.jpg", MAXPX)
    assert row["status"] == "rejected" and row["reject_reason"].startswith("truncated: "), row
    assert row["image_id"] == sha256_file(tmp_path / "t.jpg") and row["phash"] is None


def test_corrupt_entropy_data_is_accepted_as_libjpeg_does(tmp_path, chelsea):
    """libjpeg only warns on bad Huffman data and Pillow keeps the picture (full decode alike):
    such a file is ok, its hash is of what a viewer shows. Recorded, not a rule to keep."""
    chelsea.save(tmp_path / "b.jpg", quality=92)
    d = bytearray((tmp_path / "b.jpg").read_bytes())
    d[len(d) // 2] ^= 0xA5
    (tmp_path / "c.jpg").write_bytes(d)
    assert inspect_image(tmp_path / "c.jpg", MAXPX)["status"] == "ok"


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (1000, 70)])
@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_hash_equals_the_physically_rotated_image(tmp_path, chelsea, size, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.jpg"
    chelsea.resize(size).save(p, quality=95, exif=exif)
    upright = tmp_path / "upright.png"
    ImageOps.exif_transpose(Image.open(p)).convert("RGB").save(upright)
    row, ref = inspect_image(p, MAXPX), inspect_image(upright, MAXPX)
    swap = orientation >= 5
    assert (row["width"], row["height"]) == ((size[1], size[0]) if swap else size) == (ref["width"], ref["height"])
    assert row["exif_orientation"] == orientation and hamming(row["phash"], ref["phash"]) <= 4


# ---- geometry and formats ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 1), (1, 10000), (10000, 1), (64, 64), (65, 9000), (9000, 65), (128, 128),
                                  (7, 600), (513, 515), (131, 4001)])
@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_extreme_geometry(tmp_path, chelsea, size, ext):
    p = tmp_path / f"g.{ext}"
    chelsea.resize(size).save(p, **({"quality": 90, "progressive": True} if ext == "jpg" else {}))
    row = inspect_image(p, MAXPX)
    assert (row["status"], row["width"], row["height"]) == ("ok", *size)
    assert len(row["phash"]) == 16 and row["phash"] == phash_file(p)


def test_unusual_modes_and_animations(tmp_path, chelsea):
    import numpy as np

    grey16 = np.asarray(chelsea.convert("L")).astype(np.uint16) * 257
    frames = [chelsea, chelsea.rotate(90), chelsea.rotate(180)]
    pal = chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    nan = np.asarray(chelsea.convert("L")).astype(np.float32) * 3.7 - 100
    nan[0, :10], nan[1, :3] = np.nan, np.inf
    made = {"16bit.png": lambda p: Image.fromarray(grey16).save(p),
            "palette-trns.png": lambda p: pal.save(p, transparency=0),
            "la.png": lambda p: chelsea.convert("LA").save(p),
            "i16.tif": lambda p: Image.fromarray(grey16).save(p),
            "float.tif": lambda p: Image.fromarray(grey16.astype(np.float32) / 65535).save(p),
            "float-nan.tif": lambda p: Image.fromarray(nan).save(p),
            "all-nan.tif": lambda p: Image.fromarray(np.full((300, 451), np.nan, np.float32)).save(p),
            "anim.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100),
            "anim.webp": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100),
            "apng.png": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100),
            "pgm16.pgm": lambda p: Image.fromarray(grey16).save(p)}
    ref = inspect_image((chelsea.save(tmp_path / "ref.png"), tmp_path / "ref.png")[1], MAXPX)["phash"]
    for name, make in made.items():
        make(tmp_path / name)
        row = inspect_image(tmp_path / name, MAXPX)
        assert (row["status"], row["width"], row["height"]) == ("ok", 451, 300), (name, row["reject_reason"])
        if name not in ("palette-trns.png", "all-nan.tif"):  # first frame, greyscale of the same picture
            assert hamming(row["phash"], ref) <= 4, name


# ---- files: ingest and raw_images in a real workspace --------------------------------------------
def test_odd_files_in_ingest_and_raw_images(ws, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SK / "rocket.jpg", src / "good.jpg")
    (src / "zero.jpg").write_bytes(b"")
    (src / "dir.jpg").mkdir()  # a folder with an image name is a folder
    shutil.copy(SK / "coffee.png", src / "dir.jpg" / "inner.png")
    os.symlink(src / "good.jpg", src / "link.jpg")  # never followed (could point outside)
    os.symlink(src / "gone.jpg", src / "dangling.jpg")
    shutil.copy(SK / "camera.png", src / "new\nline.png")
    shutil.copy(SK / "camera.png", os.fsencode(src) + b"/bad\xff.png")
    res = ingest(ws, src, "b1")
    assert sorted(res.copied) == ["dir.jpg/inner.png", "good.jpg", "new\nline.png", "zero.jpg"]
    assert res.skipped == [("bad\\xff.png", "file name is not valid UTF-8")]
    out = scan_batch(ws, "b1")
    rows = _rows(ws, "b1")
    assert rows["zero.jpg"]["reject_reason"] == "empty: zero-byte file" and rows["zero.jpg"]["image_id"] is not None
    assert rows["new\nline.png"]["status"] == rows["dir.jpg/inner.png"]["status"] == "ok"
    assert (out["ok"], out["rejected"]) == (3, 1)


def test_non_utf8_name_put_in_the_inbox_by_hand_is_a_rejected_row(ws, tmp_path):
    """Ingest skips such names, but a file copied into inbox/<batch>/ by hand used to fail the
    whole raw_images step (pyarrow cannot store the name) and left the batch stale forever."""
    (tmp_path / "in").mkdir()
    shutil.copy(SK / "rocket.jpg", tmp_path / "in" / "good.jpg")
    ingest(ws, tmp_path / "in", "b1")
    inbox = ws.batch_dir("b1")
    shutil.copy(SK / "camera.png", os.fsencode(inbox) + b"/hand\xff\xfe.png")
    out = scan_batch(ws, "b1")
    rows = _rows(ws, "b1")
    bad = rows["hand\\xff\\xfe.png"]
    assert (bad["status"], bad["uri"], bad["image_id"]) == ("rejected", "inbox/b1/hand\\xff\\xfe.png", None)
    assert bad["reject_reason"].startswith("unreadable: file name is not valid UTF-8")
    assert rows["good.jpg"]["status"] == "ok" and out["rejects"] == [f"hand\\xff\\xfe.png: {bad['reject_reason']}"]
    assert stale_stage(ws, "b1", "some-model")[0] != "raw_images"  # the table matches the inbox


def test_file_vanishing_between_listing_and_reading(ws, tmp_path, monkeypatch):
    """The race is made real by deleting the file right after the real listing."""
    from labelloop.ingest import files as I
    from labelloop.ingest import scan as S

    src = tmp_path / "in"
    src.mkdir()
    for n in ("a.png", "b.png"):
        shutil.copy(SK / "coffee.png" if n == "a.png" else SK / "camera.png", src / n)
    real = I.list_image_files

    def listing_then_delete(folder):
        files = real(folder)
        next(f for f in files if f.name == "b.png").unlink()
        return files

    monkeypatch.setattr(I, "list_image_files", listing_then_delete)
    res = ingest(ws, src, "b1")
    assert res.copied == ["a.png"] and res.skipped[0][0].endswith("b.png") and "unreadable" in res.skipped[0][1]
    shutil.copy(SK / "camera.png", ws.batch_dir("b1") / "b.png")
    monkeypatch.setattr(S, "list_image_files", listing_then_delete)
    out = scan_batch(ws, "b1")
    assert out["rejects"][0].startswith("b.png: unreadable: ") and out["ok"] == 1


def test_file_over_the_in_memory_limit(ws, tmp_path):
    """> IN_MEMORY_BYTES: sha256 in chunks, decoded from the file (BMP: uncompressed; JPEG: padded)."""
    src = tmp_path / "in"
    src.mkdir()
    im = Image.open(SK / "astronaut.png").convert("RGB").resize((5000, 4600))  # 23 Mpx < max_pixels
    im.save(src / "big.bmp")
    im.resize((512, 512)).save(src / "pad.jpg", quality=90)
    data = (src / "pad.jpg").read_bytes()
    (src / "pad.jpg").write_bytes(data + b"\0" * (IN_MEMORY_BYTES + 1 - len(data)))
    assert all(p.stat().st_size > IN_MEMORY_BYTES for p in src.iterdir())
    assert sorted(ingest(ws, src, "b1").copied) == ["big.bmp", "pad.jpg"]
    scan_batch(ws, "b1")
    rows = _rows(ws, "b1")
    for n, r in rows.items():
        assert r["status"] == "ok" and r["image_id"] == sha256_file(src / n) and r["bytes"] == (src / n).stat().st_size
    assert hamming(rows["big.bmp"]["phash"], rows["pad.jpg"]["phash"]) <= 4
    assert rows["big.bmp"]["phash"] == phash_file(src / "big.bmp", image_id=rows["big.bmp"]["image_id"])


def test_unreadable_files(ws, tmp_path):
    """A path that cannot be read (a folder named like an image; a file without read permission,
    which only a non-root user can be refused) is an "unreadable" row, never a crash."""
    (tmp_path / "dir.png").mkdir()
    row = inspect_image(tmp_path / "dir.png", MAXPX)
    assert row["status"] == "rejected" and row["reject_reason"].startswith("unreadable: ") and row["image_id"] is None
    if os.geteuid() == 0:  # root reads files whatever their mode: the permission case needs another user
        return
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SK / "camera.png", src / "locked.png")
    shutil.copy(SK / "coffee.png", src / "fine.png")
    os.chmod(src / "locked.png", 0)
    try:
        res = ingest(ws, src, "b1")
        assert res.copied == ["fine.png"] and "unreadable" in res.skipped[0][1]
        row = inspect_image(src / "locked.png", MAXPX)
        assert row["reject_reason"].startswith("unreadable: ") and row["image_id"] is None
    finally:
        os.chmod(src / "locked.png", 0o644)


# ---- the one-time hash upgrade never hashes other bytes onto a row ------------------------------
def test_upgrade_leaves_replaced_and_deleted_files_alone(ws, tmp_path):
    s1, s2 = tmp_path / "in1", tmp_path / "in2"
    s1.mkdir(), s2.mkdir()
    for n, src in (("a.png", "moon.png"), ("b.jpg", "retina.jpg"), ("c.png", "camera.png")):
        shutil.copy(SK / src, s1 / n)
    shutil.copy(SK / "coffee.png", s2 / "d.png")
    ingest(ws, s1, "b1")
    scan_batch(ws, "b1")
    as_legacy_table(repo.images_path(ws, "b1"))
    before = _rows(ws, "b1")
    shutil.copy(SK / "astronaut.png", ws.locate(before["a.png"]["uri"]))  # other bytes at the same path
    ws.locate(before["c.png"]["uri"]).unlink()
    ingest(ws, s2, "b2")
    out = scan_batch(ws, "b2")
    after = _rows(ws, "b1")
    assert out["rehashed_images"] == 1 and after["b.jpg"]["phash_method"] == PHASH_METHOD
    assert (after["a.png"]["phash"], after["a.png"]["phash_method"]) == (before["a.png"]["phash"], None)
    assert after["a.png"]["phash"] != phash_file(SK / "astronaut.png")
    assert (after["c.png"]["phash"], after["c.png"]["phash_method"]) == (before["c.png"]["phash"], None)
    problems = sorted(out["rehash_problems"])
    assert problems[0].startswith("b1/a.png: ") and "changed: the file's sha256 is" in problems[0]
    assert problems[1].startswith("b1/c.png: ") and len(problems) == 2
    with pytest.raises(ImageError, match="a.png: changed: the file's sha256 is .* re-materialize raw_images"):
        phash_file(ws.locate(before["a.png"]["uri"]), image_id=before["a.png"]["image_id"])


def test_listing_order_and_hidden_entries(tmp_path):
    """scandir listing: sorted by relative POSIX path across folders, hidden parts left out."""
    for rel in ("b/z.jpg", "a.jpg", "a/b.png", "a-b.png", ".hid/x.jpg", "c/.x.png", "c/y.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    rels = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert rels == sorted(rels) == ["a-b.png", "a.jpg", "a/b.png", "b/z.jpg"]
