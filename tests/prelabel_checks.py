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
