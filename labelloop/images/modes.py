"""Decoded images of any Pillow mode -> 8-bit "RGB" as labelloop displays them.

Conversions (no clipping): "I;16*" scaled by 255/65535 (or by TIFF BitsPerSample), "I" by its bit
depth (16 if the values fit, else 32; min-max if negative); "F" times 255 when within [0, 1], else
min-max (NaN/inf -> darkest); alpha modes and images with ``info["transparency"]`` (palette, L,
RGB) composited on white; "CMYK", "1", "L", "P" and other modes via Pillow's ``convert("RGB")``
(Pillow docs, "Concepts: Modes").
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _scaled_l(arr: np.ndarray, top: float | None) -> Image.Image:
    """Greyscale array -> "L" as ``arr * 255 / top``, or min-max when ``top`` is None."""
    if top is None:
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        arr, top = arr - lo, (hi - lo) or 1.0
    return Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))


def _grey_to_l(im: Image.Image) -> Image.Image:
    """Integer ("I;16*", "I") or float ("F") greyscale -> "L" without clipping (module docstring)."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        finite = np.isfinite(arr)
        arr = np.where(finite, arr, arr[finite].min() if finite.any() else 0.0)
        return _scaled_l(arr, 1.0 if arr.size and arr.min() >= 0 and arr.max() <= 1 else None)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0:  # signed data: no bit depth maps it onto 0-255, use its range
        return _scaled_l(arr, None)
    nominal = 16 if im.mode.startswith("I;16") or hi <= 65535 else 32
    tag = getattr(im, "tag_v2", {}).get(258) if im.format == "TIFF" else None  # BitsPerSample
    tag = tag[0] if isinstance(tag, tuple) else tag
    bits = tag if isinstance(tag, int) and 1 <= tag <= nominal and hi < 2**tag else nominal
    return _scaled_l(arr, 2.0**bits - 1)


def to_rgb(im: Image.Image) -> Image.Image:
    """Decoded image of any Pillow mode -> 8-bit "RGB", alpha composited on white, empty info."""
    if im.mode in _GREY_MODES:
        out = _grey_to_l(im).convert("RGB")
    elif im.mode in _ALPHA_MODES or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
    elif im.mode == "RGB":  # already displayable: share the decoded pixels, no copy (ingest speed)
        out = im._new(im.im)
    else:  # 1, L, P, CMYK (the JPEG plugin undoes Adobe-inverted CMYK), YCbCr, ...
        out = im.convert("RGB")
    out.info = {}
    return out
