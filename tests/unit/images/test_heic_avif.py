"""HEIC/HEIF (pillow-heif) and AVIF (Pillow's own plugin) photos, made here from a real photo:
identity, displayed size with the orientation applied, release copies, damaged files, ingest."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import labelloop.images.files  # noqa: F401 - registers the HEIF opener (the module under test)
from labelloop.images.files import ImageError, inspect_image, load_rgb, save_release_copy
from labelloop.ingest.files import ingest, list_image_files
from labelloop.ingest.scan import scan_batch
from labelloop.tables import read_rows
from labelloop.tables.schemas import IMAGES
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.helpers import skimage_data

MAXPX = 50_000_000
# the same photo as the test files, an odd, non-square size: a wrong rotation shows in width/height
SIZE = (301, 200)

pytestmark = pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF plugin")


def source() -> Image.Image:
    return Image.open(skimage_data() / "astronaut.png").convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)


def encode(fmt: str, orientation: int = 1, img: Image.Image | None = None) -> bytes:
    """``img`` (default: :func:`source`) as a real HEIC (``fmt="HEIF"``, pillow-heif's HEVC
    encoder) or AVIF (Pillow's libavif), with EXIF Orientation ``orientation`` when not 1."""
    buf = io.BytesIO()
    kw: dict = {"quality": 90}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    (img or source()).save(buf, format=fmt, **kw)
    return buf.getvalue()


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b.convert("RGB"), np.int16)).mean())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """photo.heic, photo.avif (upright) and rot6.heic, rot6.avif: the source stored rotated 90
    degrees counter-clockwise with EXIF orientation 6, so that a viewer shows the source."""
    root = tmp_path_factory.mktemp("heic-avif")
    out = {}
    for ext, fmt in (("heic", "HEIF"), ("avif", "AVIF")):
        out[f"photo.{ext}"] = root / f"photo.{ext}"
        out[f"photo.{ext}"].write_bytes(encode(fmt))
        stored = source().transpose(Image.Transpose.ROTATE_90)  # 200x301, displayed with orientation 6
        out[f"rot6.{ext}"] = root / f"rot6.{ext}"
        out[f"rot6.{ext}"].write_bytes(encode(fmt, 6, stored))
    return out


def test_files_are_real_heic_and_avif(files):
    assert files["photo.heic"].read_bytes()[4:12] == b"ftypheic"
    assert files["photo.avif"].read_bytes()[4:12] == b"ftypavif"


@pytest.mark.parametrize("name, fmt", [("photo.heic", "HEIF"), ("photo.avif", "AVIF")])
def test_inspect_upright(files, name, fmt):
    path = files[name]
    row = inspect_image(path, MAXPX)
    assert row["status"] == "ok", row["reject_reason"]
    assert row["image_id"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (row["width"], row["height"]) == SIZE
    assert (row["format"], row["mode"], row["exif_orientation"]) == (fmt, "RGB", 1)
    assert row["bytes"] == path.stat().st_size and len(row["phash"]) == 16


@pytest.mark.parametrize("name, fmt", [("rot6.heic", "HEIF"), ("rot6.avif", "AVIF")])
def test_inspect_orientation_6_gives_the_displayed_size(files, name, fmt):
    """Stored 200x301 with orientation 6: displayed (and measured) 301x200, whether the
    decoder turned the pixels (libheif applies HEIF's irot) or labelloop did (AVIF, as JPEG)."""
    row = inspect_image(files[name], MAXPX)
    assert row["status"] == "ok", row["reject_reason"]
    assert (row["width"], row["height"]) == SIZE
    assert row["format"] == fmt and row["exif_orientation"] == 6
    assert row["image_id"] == hashlib.sha256(files[name].read_bytes()).hexdigest()
    # same picture as the upright file: perceptual hashes within the near-duplicate distance
    upright = inspect_image(files[name.replace("rot6", "photo")], MAXPX)
    assert (int(row["phash"], 16) ^ int(upright["phash"], 16)).bit_count() <= 6


@pytest.mark.parametrize("name", ["photo.heic", "photo.avif", "rot6.heic", "rot6.avif"])
def test_release_copy_is_a_png_close_to_the_source(files, tmp_path, name):
    path = files[name]
    image_id = hashlib.sha256(path.read_bytes()).hexdigest()
    written = save_release_copy(path, tmp_path / "out", "img", image_id=image_id)
    assert written == "img.png"
    with Image.open(tmp_path / "out" / written) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == SIZE
        assert not im.info.get("exif")
        diff = mean_abs_diff(source(), im)
    assert diff < 4.0, diff  # lossy HEVC/AV1 at quality 90 on 0-255 pixels; a wrong turn is > 30
    assert mean_abs_diff(load_rgb(path), Image.open(tmp_path / "out" / written)) == 0.0
    # the same input always gives the same bytes
    again = save_release_copy(path, tmp_path / "again", "img")
    assert (tmp_path / "again" / again).read_bytes() == (tmp_path / "out" / written).read_bytes()


def test_a_wrong_rotation_would_show(files):
    """The pixel check above can tell a turned image: the source against itself turned 180."""
    assert mean_abs_diff(source(), source().transpose(Image.Transpose.ROTATE_180)) > 30


def test_heic_with_alpha_is_composited_on_white(tmp_path):
    rgba = source().convert("RGBA")
    rgba.putalpha(Image.new("L", SIZE, 0))  # fully transparent: white once composited
    p = tmp_path / "clear.heic"
    p.write_bytes(encode("HEIF", img=rgba))
    row = inspect_image(p, MAXPX)
    assert row["status"] == "ok" and row["mode"] == "RGBA"
    assert np.asarray(load_rgb(p)).min() >= 250


@pytest.mark.parametrize("ext, fmt", [("heic", "HEIF"), ("avif", "AVIF")])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_file_is_a_rejected_row(tmp_path, ext, fmt, keep):
    data = encode(fmt)
    p = tmp_path / f"cut.{ext}"
    p.write_bytes(data[: int(len(data) * keep)])
    row = inspect_image(p, MAXPX)
    assert row["status"] == "rejected" and row["width"] is None and row["phash"] is None
    assert row["image_id"] == hashlib.sha256(p.read_bytes()).hexdigest() and row["bytes"] == p.stat().st_size
    assert row["reject_reason"] == row["reject_reason"].strip()  # no trailing newline of libheif
    code = row["reject_reason"].split(":")[0]
    assert code in ("truncated", "corrupt"), row["reject_reason"]
    assert "unsupported format" not in row["reject_reason"]
    with pytest.raises(ImageError) as exc:
        load_rgb(p)
    assert exc.value.code == code and str(p) in str(exc.value)
    with pytest.raises(ImageError):
        save_release_copy(p, tmp_path / "out", "x")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_heic_cut_in_its_image_data_says_truncated(tmp_path):
    data = encode("HEIF")
    p = tmp_path / "half.heic"
    p.write_bytes(data[: len(data) // 2])
    row = inspect_image(p, MAXPX)
    assert row["format"] == "HEIF"  # the header was read; the image data ends early
    assert row["reject_reason"].startswith("truncated: "), row["reject_reason"]


def test_heic_cut_in_its_header_says_truncated(tmp_path):
    data = encode("HEIF")
    p = tmp_path / "head.heic"
    p.write_bytes(data[:300])
    row = inspect_image(p, MAXPX)
    assert row["reject_reason"].startswith("truncated: HEIC: "), row["reject_reason"]


def test_avif_of_the_generic_mif1_brand_opens(files, tmp_path):
    """An AVIF whose major brand is the generic "mif1" (AVIF among its compatible brands) goes to
    Pillow's AVIF plugin, not to pillow-heif (whose wheels decode HEVC only)."""
    data = bytearray(files["photo.avif"].read_bytes())
    data[8:12] = b"mif1"
    p = tmp_path / "generic.avif"
    p.write_bytes(bytes(data))
    row = inspect_image(p, MAXPX)
    assert row["status"] == "ok" and row["format"] == "AVIF", row["reject_reason"]
    p.write_bytes(bytes(data[:200]))
    assert inspect_image(p, MAXPX)["reject_reason"].startswith("truncated: AVIF: ")


def test_heic_of_the_generic_mif1_brand_opens(files, tmp_path):
    data = bytearray(files["photo.heic"].read_bytes())
    data[8:12] = b"mif1"
    p = tmp_path / "generic.heif"
    p.write_bytes(bytes(data))
    row = inspect_image(p, MAXPX)
    assert row["status"] == "ok" and row["format"] == "HEIF", row["reject_reason"]


def test_ingest_and_raw_images_take_heic_and_avif(files, tmp_path):
    """Through a real workspace: the new extensions are listed, copied byte for byte and
    inspected; a damaged HEIC is a rejected row with its reason and the batch completes."""
    root = tmp_path / "ws"
    ws = init_workspace(Workspace.at(root))
    src = tmp_path / "phone"
    src.mkdir()
    for name, path in files.items():
        shutil.copyfile(path, src / name.replace("photo", "IMG_0001").upper() if name.startswith("photo")
                        else src / name)
    heic = files["photo.heic"].read_bytes()
    (src / "broken.heif").write_bytes(heic[: len(heic) // 2])
    names = ["IMG_0001.AVIF", "IMG_0001.HEIC", "broken.heif", "rot6.avif", "rot6.heic"]
    assert [p.name for p in list_image_files(src)] == names
    res = ingest(ws, src, batch="phone")
    assert res.copied == names and res.skipped == [] and res.not_images == []
    for n in names:
        assert (ws.inbox / "phone" / n).read_bytes() == (src / n).read_bytes()
    summary = scan_batch(ws, "phone")
    assert (summary["ok"], summary["rejected"]) == (4, 1)
    rows = {r["source_path"]: r for r in read_rows(repo.images_path(ws, "phone"), IMAGES)}
    for n in names:
        assert rows[n]["image_id"] == hashlib.sha256((src / n).read_bytes()).hexdigest()
    assert rows["broken.heif"]["status"] == "rejected"
    assert rows["broken.heif"]["reject_reason"].startswith("truncated: ")
    for n in ("IMG_0001.AVIF", "IMG_0001.HEIC", "rot6.avif", "rot6.heic"):
        assert rows[n]["status"] == "ok" and (rows[n]["width"], rows[n]["height"]) == SIZE, rows[n]
    assert rows["rot6.heic"]["exif_orientation"] == rows["rot6.avif"]["exif_orientation"] == 6


@pytest.mark.parametrize("name", ["photo.heic", "rot6.avif"])
def test_pixel_limit_applies_from_the_header(files, name):
    row = inspect_image(files[name], max_pixels=SIZE[0] * SIZE[1] - 1)
    assert row["status"] == "rejected" and row["reject_reason"].startswith("too many pixels: ")
    assert inspect_image(files[name], max_pixels=SIZE[0] * SIZE[1])["status"] == "ok"
