"""Masks as Label Studio brush regions: COCO RLE (ours) <-> Label Studio's brush RLE.

Label Studio stores a ``BrushLabels`` region as ``{"format": "rle", "rle": [bytes...],
"brushlabels": [label]}``: its own bit-packed run-length encoding (not COCO's) of the region's
RGBA bitmap at the image's natural size (``original_width x original_height``), row-major, the
mask in the alpha channel. The codec is label-studio-sdk's (``label_studio_sdk.converter.brush``:
``mask2rle`` writes a grey mask repeated over the four channels, ``decode_rle`` gives the flat
``H * W * 4`` bytes); labelloop only checks sizes and converts to and from COCO RLE
(:mod:`labelloop.geometry.masks`).

A pixel belongs to the mask when its alpha is >= 128 (:data:`ALPHA_THRESHOLD`); labelloop
writes 255 for the mask and 0 elsewhere.
"""

from __future__ import annotations

import numpy as np

from labelloop.geometry.masks import decode_rle, encode_rle

#: Alpha at or above which a brush pixel is in the mask (Label Studio paints RGBA; label-studio-sdk's own threshold).
ALPHA_THRESHOLD = 128
_HEADER_BYTES = 6  # 32-bit value count, 5-bit word size, 4 x 4-bit run-length sizes (43 bits)


def mask_to_brush_rle(mask_rle_json: str) -> list[int]:
    """COCO RLE JSON of an ``H x W`` mask -> Label Studio brush RLE (list of byte values 0-255)
    of the ``W x H`` image (``label_studio_sdk.converter.brush.mask2rle`` of the mask x 255).

    Raises:
        ValueError: a malformed RLE (:func:`labelloop.geometry.masks.decode_rle`).
    """
    from label_studio_sdk.converter.brush import mask2rle  # imports in seconds: only when used

    m = decode_rle(mask_rle_json)
    return [int(b) for b in mask2rle(np.where(m > 0, 255, 0).astype(np.uint8))]


def brush_rle_to_mask(rle: object, width: int, height: int) -> str:
    """Label Studio brush RLE of a ``width x height`` image -> COCO RLE JSON of its mask
    (alpha >= :data:`ALPHA_THRESHOLD`).

    The header's value count must be ``width * height * 4`` (checked before decoding, so a
    hostile count never allocates), and the list must be bytes.

    Raises:
        ValueError: not a list of integers 0-255, a header for another image size, a word size
            over 8 bits, or a bit stream that ends early.
    """
    if (not isinstance(rle, list) or len(rle) < _HEADER_BYTES
            or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in rle)):
        raise ValueError("brush 'rle' must be a list of at least 6 integers 0-255 (Label Studio brush RLE)")
    n = int.from_bytes(bytes(rle[:4]), "big")
    if n != width * height * 4:
        raise ValueError(f"brush RLE holds {n} values, but a {width}x{height} RGBA image has {width * height * 4} "
                         "(size mismatch)")
    if len(rle) > 4 * n + 64:  # even one run per value packs into fewer bytes: padding or garbage
        raise ValueError(f"brush RLE of {len(rle)} bytes is longer than any encoding of a {width}x{height} image")
    word_size = (rle[4] >> 3) + 1  # 5 bits after the 32-bit count
    if word_size > 8:  # the SDK decodes into uint8: a wider word overflows it
        raise ValueError(f"brush RLE word size {word_size} bits is wider than the 8 bits of an RGBA channel")
    from label_studio_sdk.converter.brush import (
        decode_rle as ls_decode,  # heavy (seconds to import): only when a brush mask or a live server is used
    )

    try:
        flat = ls_decode(rle)
    except (ValueError, IndexError, OverflowError):
        raise ValueError("brush RLE bit stream ends early or is malformed") from None
    alpha = np.asarray(flat, dtype=np.uint8).reshape(height, width, 4)[:, :, 3]
    return encode_rle(alpha >= ALPHA_THRESHOLD)
