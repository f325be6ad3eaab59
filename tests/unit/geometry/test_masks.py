"""labelloop.geometry.masks against pycocotools' own rasterization and a thresholded real photo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi

from labelloop.geometry import masks


def _disk(h=200, w=220, cy=100, cx=110, r=40):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)


def _rect():
    m = np.zeros((120, 160), np.uint8)
    m[20:60, 30:150] = 1
    return m


def _l_shape():
    m = np.zeros((100, 100), np.uint8)
    m[10:90, 10:30] = 1
    m[70:90, 10:80] = 1
    return m


def _two_blobs():
    return np.maximum(_disk(cy=50, cx=50, r=25), _disk(cy=140, cx=160, r=30))


def _ring():
    return _disk(r=40) - _disk(r=20)


def _iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / (a | b).sum()


def _coco_raster(polygons, h, w):
    """The way pycocotools.coco.COCO.annToMask rasterizes a polygon segmentation."""
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w)))


@pytest.mark.parametrize("mask", [_disk(), _rect(), _l_shape(), _two_blobs(), _ring(), np.zeros((7, 9), np.uint8)])
def test_rle_round_trip_exact(mask):
    text = masks.encode_rle(mask)
    obj = json.loads(text)
    assert obj["size"] == list(mask.shape) and isinstance(obj["counts"], str)
    back = masks.decode_rle(text)
    assert back.dtype == np.uint8 and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)
    # bool input and pycocotools' own encoding agree
    assert masks.encode_rle(mask.astype(bool)) == text
    assert mask_utils.encode(np.asfortranarray(mask))["counts"].decode() == obj["counts"]


def test_area_and_bbox():
    text = masks.encode_rle(_rect())
    assert masks.rle_area(text) == 40 * 120
    assert masks.rle_bbox_xyxy(text) == [30.0, 20.0, 150.0, 60.0]
    assert masks.rle_bbox_xyxy(masks.encode_rle(np.zeros((4, 5)))) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "name, mask, n_parts",
    [("disk", _disk(), 1), ("rectangle", _rect(), 1), ("L", _l_shape(), 1), ("two blobs", _two_blobs(), 2)],
)
def test_polygon_round_trip_through_pycocotools(name, mask, n_parts):
    polys = masks.mask_to_polygons(mask)
    assert len(polys) == n_parts
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
    h, w = mask.shape
    back = _coco_raster(polys, h, w)
    assert _iou(back, mask) >= 0.95
    # pixel-edge tracing is exact for hole-free masks
    np.testing.assert_array_equal(back, mask)
    np.testing.assert_array_equal(masks.decode_rle(masks.polygons_to_rle(polys, h, w)), mask)


def test_rectangle_polygon_is_its_pixel_edges():
    assert masks.mask_to_polygons(_rect()) == [[30.0, 20.0, 30.0, 60.0, 150.0, 60.0, 150.0, 20.0]]


def test_single_pixel_is_a_unit_square_not_a_degenerate_part():
    m = np.zeros((10, 10), np.uint8)
    m[3, 4] = 1
    polys = masks.mask_to_polygons(m)
    assert polys == [[4.0, 3.0, 4.0, 4.0, 5.0, 4.0, 5.0, 3.0]]
    np.testing.assert_array_equal(_coco_raster(polys, 10, 10), m)


def test_parts_always_have_at_least_three_points():
    rng = np.random.default_rng(0)
    m = (rng.random((40, 40)) > 0.8).astype(np.uint8)  # many isolated pixels and thin bits
    polys = masks.mask_to_polygons(m)
    assert polys and all(len(p) >= 6 for p in polys)
    np.testing.assert_array_equal(_coco_raster(polys, 40, 40), ndi.binary_fill_holes(m))


def test_empty_mask_has_no_polygons():
    assert masks.mask_to_polygons(np.zeros((5, 5))) == []
    assert masks.coco_segmentation(masks.encode_rle(np.zeros((5, 5)))) == []


def test_ring_keeps_its_hole_as_rle():
    ring = _ring()
    assert masks.has_holes(ring)
    assert not masks.has_holes(_disk()) and not masks.has_holes(_two_blobs())
    seg = masks.coco_segmentation(masks.encode_rle(ring))
    assert isinstance(seg, dict) and seg["size"] == list(ring.shape) and isinstance(seg["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(seg), ring)
    np.testing.assert_array_equal(masks.decode_rle(masks.segmentation_to_rle(seg, *ring.shape)), ring)


def test_hole_free_segmentation_is_polygons():
    seg = masks.coco_segmentation(masks.encode_rle(_two_blobs()))
    assert isinstance(seg, list) and len(seg) == 2


def test_segmentation_to_rle_accepts_uncompressed_rle():
    m = np.zeros((5, 6), np.uint8)
    m[1:3, 2:5] = 1
    runs = [11, 2, 3, 2, 3, 2, 7]  # column-major runs, background first
    text = masks.segmentation_to_rle({"size": [5, 6], "counts": runs}, 5, 6)
    np.testing.assert_array_equal(masks.decode_rle(text), m)
    np.testing.assert_array_equal(masks.decode_rle(json.dumps({"size": [5, 6], "counts": runs})), m)


def test_segmentation_to_rle_rejects_bad_input():
    with pytest.raises(ValueError, match="differs from the image"):
        masks.segmentation_to_rle(json.loads(masks.encode_rle(_rect())), 10, 10)
    with pytest.raises(ValueError, match="polygon 0"):
        masks.segmentation_to_rle([[1.0, 2.0, 3.0, 4.0]], 10, 10)
    with pytest.raises(ValueError):
        masks.segmentation_to_rle("nope", 10, 10)


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        '{"counts": "PPYo1"}',
        '{"size": [10], "counts": "PPYo1"}',
        '{"size": [10, 10], "counts": "zzz"}',  # pycocotools would read past the buffer
        '{"size": [10, 10], "counts": ""}',
        '{"size": [10, 10], "counts": "PPYo1"}',
        '{"size": [10, 10], "counts": [5, 10]}',
        '{"size": [10, 10], "counts": 3}',
    ],
)
def test_decode_rle_rejects_malformed_text(bad):
    with pytest.raises(ValueError):
        masks.decode_rle(bad)


def test_mask_iou_matches_pixels():
    a, b = _disk(), _disk(cx=130)
    got = masks.mask_iou(masks.encode_rle(a), masks.encode_rle(b))
    assert got == pytest.approx(_iou(a, b), abs=1e-12)
    assert masks.mask_iou(masks.encode_rle(a), masks.encode_rle(a)) == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        masks.mask_iou(masks.encode_rle(a), masks.encode_rle(_rect()))


def test_real_photo_threshold_polygons_round_trip():
    coins = (skimage.data.coins() > 100).astype(np.uint8)
    h, w = coins.shape
    polys = masks.mask_to_polygons(coins)
    assert len(polys) > 10
    back = masks.decode_rle(masks.polygons_to_rle(polys, h, w))
    assert _iou(back, coins) >= 0.95
    # outer outlines only: exactly the thresholded photo with its holes filled
    np.testing.assert_array_equal(back, ndi.binary_fill_holes(coins))
    # the photo's mask has holes, so the COCO segmentation keeps it as RLE, losslessly
    assert masks.has_holes(coins)
    seg = masks.coco_segmentation(masks.encode_rle(coins))
    assert isinstance(seg, dict)
    np.testing.assert_array_equal(mask_utils.decode(seg), coins)
