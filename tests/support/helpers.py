"""Shared test helpers: where the real files are, and a CLI runner bound to a workspace."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from click.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ls_fixtures() -> Path:
    """The Label Studio 1.23.2 round-trip fixtures: files made by a real Label Studio server
    (copied from shared/fixtures into tests/fixtures so a clean clone has them)."""
    env = os.environ.get("LABELLOOP_LS_FIXTURES")
    for p in ([Path(env)] if env else []) + [FIXTURES / "label-studio-1.23.2"]:
        if (p / "export_json.json").exists():
            return p
    raise FileNotFoundError(f"Label Studio fixtures missing: expected {FIXTURES / 'label-studio-1.23.2'}")


def skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def cli(ws: Path, *args: str, ok: bool = True):
    """Invoke the labelloop CLI in process on workspace ``ws``; assert exit 0 unless ``ok=False``."""
    from pipelines.cli import cli as group

    result = CliRunner().invoke(group, ["--workspace", str(ws), *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data (PNG spec, section 5.3)."""
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB pixels, with a tiny IDAT."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b"")


def make_bad_folder(dest: Path) -> dict[str, str]:
    """Write the bad-input cases of the spine issue into ``dest`` from real photos.

    Returns ``{source_path: expected}``: a reject-reason code, or ``"ok WxH"`` with the
    displayed (EXIF-applied) size, or ``"dup <first source_path>"``.
    """
    import numpy as np
    from PIL import Image

    sk = skimage_data()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "nested" / "deeper").mkdir(parents=True)
    rocket = (sk / "rocket.jpg").read_bytes()
    (dest / "truncated.jpg").write_bytes(rocket[: len(rocket) // 2])
    (dest / "empty.jpg").write_bytes(b"")
    (dest / "notes.jpg").write_text("this is not an image\n")
    chelsea = Image.open(sk / "chelsea.png").convert("RGB")
    chelsea.convert("CMYK").save(dest / "cmyk.jpg", quality=95)
    cam = np.asarray(Image.open(sk / "camera.png").convert("L")).astype(np.uint16) * 257
    Image.fromarray(cam).save(dest / "sixteen.png")
    pal = chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(dest / "palette.png", transparency=0)
    for o in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = o
        chelsea.save(dest / f"orient{o}.jpg", exif=exif, quality=95)
    (dest / "bomb.png").write_bytes(png_header_bomb())
    shutil.copyfile(sk / "astronaut.png", dest / "çhat été 1.png")
    shutil.copyfile(sk / "astronaut.png", dest / "nested" / "deeper" / "astronaut copy.png")
    shutil.copyfile(sk / "coffee.png", dest / "nested" / "coffee.png")
    return {
        "truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not an image",
        "cmyk.jpg": "ok 451x300", "sixteen.png": "ok 512x512", "palette.png": "ok 451x300",
        "orient6.jpg": "ok 300x451", "orient8.jpg": "ok 300x451", "bomb.png": "too many pixels",
        # files are ingested in sorted relative-path order: "nested/..." comes before "ç..."
        "nested/deeper/astronaut copy.png": "ok 512x512", "çhat été 1.png": "dup nested/deeper/astronaut copy.png",
        "nested/coffee.png": "ok 600x400",
    }
