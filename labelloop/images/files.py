"""Image files: identity, header checks, decoding to RGB, duplicates and release copies.

Conventions: ``image_id`` is the sha256 hex digest of the file's bytes. ``width``/``height`` are
pixels of the *displayed* image, i.e. after the EXIF Orientation tag (EXIF 2.3, tag 0x0112,
values 1-8) is applied with ``PIL.ImageOps.exif_transpose``; origin top-left, x right, y down.
``format``/``mode`` are Pillow's names (Pillow docs, "Image file formats" and "Concepts: Modes").
``phash`` is imagehash's 64-bit DCT perceptual hash of a reduced copy of the displayed image, as
16 hex digits (definition and versions: :mod:`labelloop.images.phash`); near duplicates are judged by
Hamming distance. Multi-frame files use their first frame.
HEIC/HEIF (iPhone photos) are decoded by pillow-heif's Pillow plugin (libheif with libde265),
registered once when this module is imported; AVIF by Pillow's own AVIF plugin (libavif, in
Pillow's wheels since 11.3). HEIF files carry their orientation as ``irot``/``imir`` transforms,
which libheif applies while decoding (the HEIF spec makes them, not EXIF, authoritative): their
pixels come out upright and ``exif_orientation`` keeps the file's EXIF tag for the record (what
pillow-heif reports as ``original_orientation``), not applied a second time. Pillow's AVIF
plugin instead reports the transforms as an EXIF orientation, applied as for JPEG.
Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) applies on top of ``max_pixels``;
truncated files are never accepted (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import imagehash
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError, features

from labelloop.images.modes import to_rgb
from labelloop.images.phash import HASH_INPUT_SIDE, PHASH_METHOD, hash_reduction
from labelloop.store import is_remote, open_binary, write_bytes_atomic

CHUNK = 1 << 20
#: Files up to this size are read once, for their sha256 and the decode; larger ones are streamed.
IN_MEMORY_BYTES = 64 << 20  # files up to this size are read once, for their sha256 and the decode
INSPECT_KEYS = ("image_id", "width", "height", "format", "mode", "bytes", "exif_orientation",
                "phash", "phash_method", "status", "reject_reason")
#: The codes an :class:`ImageError` (and a rejected IMAGES row's reason) starts with.
REASON_CODES = ("empty", "not an image", "unsupported format", "truncated", "corrupt",
                "too many pixels", "unreadable",
                "changed")  # "changed": a registered file's bytes are no longer its image_id (never in raw_images)
# Formats labelloop decodes; anything else Pillow recognizes is "unsupported format".
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM",
                               "TGA", "JPEG2000", "AVIF", "HEIF"})
# Signatures of formats Pillow reads (an unidentified file with one is damaged or exotic) ...
_KNOWN_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
                     b"GIF89a": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
# ... and ISO-BMFF image formats ("ftyp" brand at byte 8), with the plugin that reads each, if any.
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF",
                b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF", b"crx ": "Canon CR3"}
_FTYP_PLUGINS = {"HEIC": "HEIF", "HEIF": "HEIF", "AVIF": "AVIF"}
# What Pillow's plugins raise on bad content (pillow-heif: RuntimeError for "some other error").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                  RuntimeError, struct.error, zlib.error, MemoryError)
# Words of a plugin's message that mean the data stops early (libheif: "Unexpected end of file",
# "Insufficient input data", "Cannot read full meta box"; libavif: "Truncated data").
_SHORT_WORDS = ("truncated", "incomplete", "end of file", "insufficient input", "cannot read full")
# EXIF Orientation -> the transpose that displays the image (as ImageOps.exif_transpose)
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _register_plugins() -> None:
    """Make Pillow open HEIC/HEIF through pillow-heif, once per process (on import).

    Pillow's own plugins are registered first, so that its AVIF plugin is asked before
    pillow-heif about files of the shared "mif1"/"msf1" brands (pillow-heif's wheels decode HEVC,
    not AV1; Pillow's AVIF plugin refuses a HEIC with a SyntaxError, and Pillow then asks the next
    plugin). Thumbnails, depth and auxiliary images are not read: labelloop decodes the primary
    image only.
    """
    Image.init()
    if "HEIF" not in Image.OPEN:
        pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


_register_plugins()


class ImageError(ValueError):
    """A file cannot be used as an image; the message names the file and the problem.

    ``reason`` is ``"<code>: <detail>"`` with ``code`` in :data:`REASON_CODES`.
    """

    code: str | None = None
    reason: str | None = None
    facts: dict[str, Any] = {}


def _fail(path, code: str, detail: str, facts: dict | None = None) -> ImageError:
    err = ImageError(f"{path if is_remote(path) else os.fspath(path)}: {code}: {detail}")
    err.code, err.reason, err.facts = code, f"{code}: {detail}", dict(facts or {})
    return err


def hash_file(path, keep: int = 0) -> tuple[str, int, bytes | None]:
    """``(sha256 hex, size in bytes, the bytes themselves when the file has at most keep bytes,
    else None)``: one read serves the identity and, for ordinary images, the copy or the decode.
    ``path`` may be local or on the object store.

    Raises:
        OSError: the file cannot be read.
    """
    h, n = hashlib.sha256(), 0
    with open_binary(path) as f:
        data = f.read(keep + 1) if keep else b""
        h.update(data)
        n = len(data)
        if keep and n <= keep:
            return h.hexdigest(), n, data
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n, None


def sha256_file(path) -> str:
    """sha256 hex digest (64 lowercase hex chars) of the file's bytes, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read.
    """
    return hash_file(path)[0]


def exif_orientation(img: Image.Image) -> int:
    """EXIF Orientation (EXIF 2.3 tag 0x0112) of an opened image, an int in 1..8.

    1 = stored as displayed, 6 = rotate 90 degrees clockwise to display, 8 = 90 degrees
    counter-clockwise, 3 = 180; 2/4/5/7 add a mirror. Absent, unreadable or out-of-range values
    give 1, as ``ImageOps.exif_transpose`` leaves such images untouched. Pillow falls back to
    XMP ``tiff:Orientation``. For PNG this decodes the pixels (an ``eXIf`` chunk may follow them).
    For HEIF this is the file's tag (pillow-heif's ``original_orientation``: its decoder has
    already turned the pixels upright and set the tag to 1).
    """
    if img.format == "HEIF":
        value = img.info.get("original_orientation")
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    try:
        value = int(img.getexif().get(0x0112, 1))
    except _DECODE_ERRORS:
        return 1
    return value if 1 <= value <= 8 else 1


def _is_short(e: BaseException, msg: str) -> bool:
    """Whether a plugin's error ``e`` (message ``msg``) says the data ends too early."""
    return isinstance(e, (struct.error, EOFError)) or any(w in msg.lower() for w in _SHORT_WORDS)


def _ftyp_kind(head: bytes) -> str | None:
    """The format of an ISO-BMFF file of an image brand: "HEIC", "HEIF", "AVIF" or "Canon CR3";
    else None. A file of the generic "mif1"/"msf1" brand is named by its compatible brands."""
    if head[4:8] != b"ftyp" or head[8:12] not in _FTYP_BRANDS:
        return None
    kind = _FTYP_BRANDS[head[8:12]]
    if kind == "HEIF":
        size = int.from_bytes(head[:4], "big")
        compatible = {head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
        if compatible & {b"avif", b"avis"}:
            return "AVIF"
        if compatible & {b"heic", b"heix", b"heim", b"heis"}:
            return "HEIC"
    return kind


def _readable(plugin: str) -> bool:
    """Whether Pillow can decode the format of plugin id ``plugin`` (AVIF: only with libavif)."""
    Image.init()
    return plugin in Image.OPEN and (plugin != "AVIF" or bool(features.check("avif")))


def _identify_failure(fp, head: bytes) -> tuple[str, str]:
    """(reason code, detail) for a non-empty file no Pillow plugin would open."""
    known = [(fmt, fmt) for sig, fmt in _KNOWN_SIGNATURES.items() if head.startswith(sig)]
    kind = _ftyp_kind(head)
    if kind is not None:
        if kind not in _FTYP_PLUGINS or not _readable(_FTYP_PLUGINS[kind]):
            return "unsupported format", kind
        known.append((kind, _FTYP_PLUGINS[kind]))
    for fmt, plugin in known:
        try:  # ask the format's own plugin why, for the detail
            fp.seek(0)
            Image.init()
            Image.OPEN[plugin][0](fp, "").close()
            why, short = "unreadable header", False
        except Exception as e:  # noqa: BLE001 - any plugin failure is only a message here
            why = str(e).strip() or type(e).__name__
            short = _is_short(e, why)
        if any(w in why for w in ("unknown pixel mode", "unknown data", "not supported", "Unsupported feature")) \
                or re.fullmatch(r"cannot handle (12|16)-bit layers", why):  # 12-bit, lossless JPEG
            return "unsupported format", f"{fmt}: {why}"
        return ("truncated" if short else "corrupt"), f"{fmt}: {why}"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "unsupported format", "JPEG XL"
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "unsupported format", "SVG (vector image)"
    return "not an image", "no image format recognizes its bytes"


def _decode(path, max_pixels: int | None = None, for_hash: bool = False,
            data: bytes | None = None) -> tuple[dict, Image.Image, bool]:
    """Open, check the header, fully decode frame 0 and convert it to the displayed RGB image.

    Returns ``(facts, rgb, plain)``: facts has format, mode, width, height, exif_orientation;
    ``plain`` is True when the file's own bytes display as ``rgb`` (single-frame JPEG/PNG, mode
    RGB or L, no transparency, orientation 1). Raises ImageError carrying the facts known so far.

    ``for_hash=True`` returns instead of ``rgb`` the perceptual hash's input, a 32x32 "L"
    thumbnail of the displayed image through a reduction by
    :func:`labelloop.images.phash.hash_reduction`'s factor k: a JPEG is
    decoded at 1/k scale by libjpeg (DCT scaling through Pillow's ``draft``; YCbCr JPEGs straight
    to luma "L"), which still entropy-decodes every scan, so truncated or corrupt data is rejected
    as by a full decode; other formats are fully decoded, converted to RGB, then L, and ``reduce(k)``-ed.
    ``data``: the file's bytes when already read (``path`` then only names it in errors).
    """
    facts: dict[str, Any] = {"format": None, "mode": None}
    try:
        fp = io.BytesIO(data) if data is not None else open_binary(path)
    except OSError as e:
        raise _fail(path, "unreadable", str(e)) from None
    with fp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fp) as im:
                    facts.update(format=im.format, mode=im.mode)
                    w, h = im.size
                    if im.format not in SUPPORTED_FORMATS:
                        raise _fail(path, "unsupported format", str(im.format), facts)
                    if max_pixels is not None and w * h > max_pixels:
                        detail = f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}"
                        raise _fail(path, "too many pixels", detail, facts)
                    k = hash_reduction(w, h) if for_hash else 1
                    # Pillow's draft scales by the largest of 8/4/2/1 <= size // request: ask for
                    # size // k to get 1/k (output ceil(size / k), as libjpeg rounds up)
                    drafted = k > 1 and im.format in ("JPEG", "MPO") and \
                        im.draft("L", (w // k, h // k)) is not None
                    im.load()  # full (or DCT-scaled) decode: raises on truncated data
                    if not drafted:
                        facts["mode"] = im.mode
                    recorded = exif_orientation(im)
                    # HEIF: libheif has applied the file's transforms, the pixels are upright
                    orientation = 1 if im.format == "HEIF" else recorded
                    if for_hash:
                        out = _hash_source(im, w, k, orientation)
                        plain = False
                    else:
                        # exif_transpose copies even an upright image: skip it for orientation 1
                        out = to_rgb(ImageOps.exif_transpose(im) if orientation != 1 else im)
                        plain = (im.format in ("JPEG", "PNG") and im.mode in ("RGB", "L")
                                 and orientation == 1 and im.info.get("transparency") is None
                                 and getattr(im, "n_frames", 1) == 1)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _fail(path, "too many pixels", str(e), facts) from None
        except UnidentifiedImageError:
            fp.seek(0)
            head = fp.read(1024)
            code, detail = _identify_failure(fp, head) if head else ("empty", "zero-byte file")
            raise _fail(path, code, detail, facts) from None
        except _DECODE_ERRORS as e:
            msg = str(e).strip() or type(e).__name__
            low, code = msg.lower(), "corrupt"
            if _is_short(e, msg) and not isinstance(e, struct.error):
                code = "truncated"
            elif ("decoder" in low and "not available" in low) or "unsupported feature" in low:
                code = "unsupported format"  # e.g. libheif: "Unsupported feature: Unsupported codec"
            raise _fail(path, code, msg, facts) from None
    facts.update(width=h if orientation >= 5 else w, height=w if orientation >= 5 else h,
                 exif_orientation=recorded)
    return facts, out, plain


def _hash_source(im: Image.Image, width: int, k: int, orientation: int) -> Image.Image:
    """The 32x32 "L" thumbnail :mod:`labelloop.images.phash` hashes, from the decoded ``im`` (stored
    orientation, ``width`` px wide before any DCT scaling): reduced by ``k`` in all, resampled
    (antialiased bilinear) to 32x32, then turned upright."""
    src = im if im.mode == "L" and im.info.get("transparency") is None else to_rgb(im).convert("L")
    rest = k // max(1, round(width / im.width))  # what DCT scaling did not reduce
    if rest > 1:
        src = src.reduce(rest)
    src = src.resize((HASH_INPUT_SIDE, HASH_INPUT_SIDE), Image.Resampling.BILINEAR)
    return src.transpose(_ORIENT[orientation]) if orientation != 1 else src


def inspect_image(path, max_pixels: int) -> dict:
    """Identity, header facts and validity of one image file; never raises for bad content.

    Returns a dict: ``image_id`` (sha256 hex), ``width``/``height`` (int pixels after EXIF
    transpose), ``format`` (Pillow name, e.g. "JPEG"), ``mode`` (Pillow mode as decoded, before RGB
    conversion, e.g. "CMYK", "I;16"), ``bytes`` (file size), ``exif_orientation`` (1..8), ``phash``
    (16 hex digits, :mod:`labelloop.images.phash`), ``phash_method`` (:data:`labelloop.images.phash.PHASH_METHOD`),
    ``status`` ("ok" | "rejected"),
    ``reject_reason`` (None, or ``"<code>: <detail>"``, code in :data:`REASON_CODES`).
    ``width * height`` is checked against ``max_pixels`` from the header, before any pixel is
    decoded. Rejected rows keep ``image_id``/``bytes`` (None only when the file cannot be read,
    "unreadable") and the header's format/mode when known; width, height and phash are None.
    """
    row: dict[str, Any] = dict.fromkeys(INSPECT_KEYS)
    row.update(exif_orientation=1, status="rejected")
    try:  # one read (one GET on an object store) for the identity and the decode
        row["image_id"], row["bytes"], data = hash_file(path, keep=IN_MEMORY_BYTES)
    except OSError as e:
        row["reject_reason"] = f"unreadable: {e}"
        return row
    if row["bytes"] == 0:
        row["reject_reason"] = "empty: zero-byte file"
        return row
    try:
        facts, src, _ = _decode(path, max_pixels, for_hash=True, data=data)
    except ImageError as e:
        row.update(format=e.facts.get("format"), mode=e.facts.get("mode"), reject_reason=e.reason)
        return row
    row.update(facts, phash=str(imagehash.phash(src)), phash_method=PHASH_METHOD, status="ok")
    return row


def _read_checked(path, image_id: str) -> bytes | None:
    """The file's bytes (None above :data:`IN_MEMORY_BYTES`: the caller reads it again) after
    checking their sha256 is ``image_id``.

    Raises:
        ImageError: "unreadable", or "changed" when the file's bytes are no longer ``image_id``
            (replaced since its raw_images row was written).
    """
    try:
        digest, _, data = hash_file(path, keep=IN_MEMORY_BYTES)
    except OSError as e:
        raise _fail(path, "unreadable", str(e)) from None
    if digest != image_id:
        raise _fail(path, "changed", f"the file's sha256 is {digest[:12]}..., not the image_id {image_id[:12]}... "
                                     "its row was written with: re-materialize raw_images for its batch")
    return data


def check_image_id(path, image_id: str) -> None:
    """Check that the file at ``path`` still holds the bytes of ``image_id`` (sha256 hex).

    Raises:
        ImageError: code "unreadable", or "changed" (message names the file and both digests).
    """
    _read_checked(path, image_id)


def phash_file(path, image_id: str | None = None) -> str:
    """The perceptual hash :func:`inspect_image` stores for ``path`` (16 hex digits, method
    :data:`labelloop.images.phash.PHASH_METHOD`).

    ``image_id``: the sha256 hex the file must still have (a row's ``image_id``), so that a
    file replaced since the row was written never gives that row its hash; the file is then
    read once for the check and the decode (up to :data:`IN_MEMORY_BYTES`).

    Raises:
        ImageError: the file cannot be read or decoded, or (code "changed") its sha256 is not
            ``image_id`` (message names the file).
    """
    data = _read_checked(path, image_id) if image_id is not None else None
    return str(imagehash.phash(_decode(path, for_hash=True, data=data)[1]))


def load_rgb(path, image_id: str | None = None) -> Image.Image:
    """The displayed image: first frame, fully decoded, EXIF-transposed, 8-bit "RGB", no info.
    With ``image_id``, the file's sha256 must still be it (checked on the bytes decoded).

    Conversions (no clipping): "I;16*" scaled by 255/65535 (or by TIFF BitsPerSample), "I" by its
    bit depth (16 if the values fit, else 32; min-max if negative); "F" times 255 when within
    [0, 1], else min-max (NaN/inf -> darkest); alpha modes and images with
    ``info["transparency"]`` (palette, L, RGB) composited on white; "CMYK", "1", "L", "P" and
    other modes via Pillow's ``convert("RGB")``.

    Raises:
        ImageError: the file cannot be read or decoded (message names the file and the reason);
            code "changed": its sha256 is not ``image_id``.
    """
    data = _read_checked(path, image_id) if image_id is not None else None
    return _decode(path, data=data)[1]


def save_release_copy(path, dest_dir, stem: str, image_id: str | None = None) -> str:
    """Write the image as consumers must see it into ``dest_dir``; return the file name written.

    A single-frame JPEG or PNG of mode "RGB"/"L", without transparency and with EXIF orientation
    1 (or none), is copied byte for byte to ``stem + ".jpg"``/``".png"`` (no re-encoding loss).
    Anything else is written as ``load_rgb(path)`` to ``stem + ".png"`` without EXIF, ICC or
    time chunks, so the same input always gives the same bytes. The write is atomic (temporary
    file in ``dest_dir``, then ``os.replace``); ``dest_dir`` is created if missing. With
    ``image_id`` the bytes copied or decoded must hash to it, so a file replaced in the inbox is
    never released under the image_id its labels were made for.

    Raises:
        ImageError: the file cannot be read or decoded; code "changed": its sha256 is not ``image_id``.
        OSError: ``dest_dir`` cannot be written.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    data = _read_checked(path, image_id) if image_id is not None else None
    facts, rgb, plain = _decode(path, data=data)
    name = stem + (".jpg" if plain and facts["format"] == "JPEG" else ".png")

    def write(f) -> None:
        if not plain:
            rgb.save(f, format="PNG")
            return
        if data is not None:
            f.write(data)
            return
        with open_binary(path) as src:
            while chunk := src.read(CHUNK):
                f.write(chunk)

    write_bytes_atomic(dest / name, write)
    return name
