"""What the foundation pre-labeler tests share: the categories' prompts and mask settings, and
the check that detections are in the EXIF-corrected image's frame."""

import numpy as np

from labelloop.masks import decode_rle, encode_rle

PROMPTS = {"person": "a person", "cat": "a cat", "face": "a human face"}
MASKS = {"person": True, "cat": True, "face": False}


def check_frame(dets, h, w):
    """Boxes inside the (H, W) image, scores in [0, 1], each category's own prompt; masks (H, W)
    uint8 exactly for mask categories, and their RLE round-trips."""
    for d in dets:
        x0, y0, x1, y1 = d.bbox
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (d.bbox, w, h)
        assert 0.0 <= d.score <= 1.0 and d.prompt == PROMPTS[d.category]
        if MASKS[d.category]:
            m = decode_rle(d.mask)
            assert m.shape == (h, w) and m.dtype == np.uint8
            assert encode_rle(m) == d.mask
        else:
            assert d.mask is None


def exif_rotated_pair(folder):
    """Write chelsea (stored 451 x 300) as ``orient6.jpg`` with EXIF orientation 6 (displayed
    rotated 90 degrees clockwise, 300 x 451) and its displayed pixels as ``shown.png`` without
    EXIF; returns the two paths."""
    from PIL import Image

    from helpers import skimage_data
    from labelloop.images import load_rgb

    chelsea = Image.open(skimage_data() / "chelsea.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    chelsea.save(folder / "orient6.jpg", exif=exif, quality=95)
    shown = load_rgb(folder / "orient6.jpg")
    assert shown.size == (300, 451)
    shown.save(folder / "shown.png")
    return folder / "orient6.jpg", folder / "shown.png"
