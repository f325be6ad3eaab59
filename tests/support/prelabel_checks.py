"""What the foundation pre-labeler tests share: the categories' prompts and mask settings, and
the check that detections are in the EXIF-corrected image's frame."""

import numpy as np

from labelloop.geometry.masks import decode_rle, encode_rle

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

    from labelloop.images.files import load_rgb
    from support.helpers import skimage_data

    chelsea = Image.open(skimage_data() / "chelsea.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    chelsea.save(folder / "orient6.jpg", exif=exif, quality=95)
    shown = load_rgb(folder / "orient6.jpg")
    assert shown.size == (300, 451)
    shown.save(folder / "shown.png")
    return folder / "orient6.jpg", folder / "shown.png"


def check_stored_rle_is_the_segmenter_mask(labeler):
    """On coffee.png (600 x 400): each stored RLE is exactly the segmenter's thresholded,
    original-size mask of its stored box (the detector and segmenter called directly)."""
    import torch

    from labelloop.images.files import load_rgb
    from labelloop.prelabel.backends.pipeline import batch_of_images, image_row
    from support.helpers import skimage_data

    rgb = load_rgb(skimage_data() / "coffee.png")
    dets = labeler.predict([rgb])[0]
    det, seg = labeler.load()
    batch = batch_of_images([rgb], labeler.prepare())
    boxes = det.detect(batch.det, batch.sizes)[0]
    need = torch.tensor([MASKS[n] for n in PROMPTS])[boxes.labels]
    masks = seg.masks(image_row(seg.encode(batch.seg), 0), boxes.xyxy[need],
                      tuple(batch.seg["input_sizes"][0].tolist()), (400, 600))
    assert masks.shape == (int(need.sum()), 400, 600) and masks.dtype == torch.bool
    expected = {tuple(round(v, 3) for v in b): m.numpy() for b, m in zip(boxes.xyxy[need].tolist(), masks)}
    stored = [d for d in dets if d.mask is not None]
    assert stored and len(stored) == len(expected)
    for d in stored:
        np.testing.assert_array_equal(decode_rle(d.mask), expected[d.bbox].astype(np.uint8))


def random_rel_pos(model, seed: int = 1):
    """Random relative-position tables (SAM initialises them to zero, hiding the bias); returns
    ``model``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model
