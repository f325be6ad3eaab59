"""CVAT ``<mask>`` elements are decoded only for a matched image of the declared size, and at most
:data:`labelloop.review.regions.MAX_MASK_PIXELS_PER_FILE` mask-box pixels per file
(labelloop.formats.cvat.reader, labelloop.review.regions)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from labelloop.formats.cvat import reader as cvat_reader
from labelloop.formats.cvat.reader import parse_cvat
from labelloop.formats.cvat.writer import cvat_rle_to_mask, mask_to_cvat_rle
from labelloop.geometry.masks import decode_rle, encode_rle
from labelloop.review import regions
from labelloop.review.importer import import_review
from support.review_inbox import CATS, cvat_export_bytes, photo_rows

HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><id>7</id>'
        '<owner><username>r</username></owner></task><dumped>2026-11-29T12:00:00+00:00</dumped></meta>\n')


def _mask_file(n: int, name: str, size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    w, h = size
    left, top, mw, mh = box
    rle = f"0, {mw * mh}"  # a box full of foreground: a few bytes, mw * mh pixels
    body = "".join(f'<image id="{i}" name="{name}" width="{w}" height="{h}">'
                   f'<mask label="cat" occluded="0" rle="{rle}" left="{left}" top="{top}" width="{mw}" height="{mh}"'
                   f' z_order="0"/></image>\n' for i in range(n))
    return (HEAD + body + "</annotations>\n").encode()


def _count_decodes(monkeypatch) -> list[int]:
    """Count CVAT mask decodes: the eager one of the old reader and the lazy one of to_pixels."""
    calls: list[int] = []

    def counted(real):
        def wrapper(*a, **k):
            calls.append(1)
            return real(*a, **k)
        return wrapper

    monkeypatch.setattr(cvat_reader, "cvat_rle_to_mask", counted(cvat_rle_to_mask), raising=False)  # the old reader
    if hasattr(regions, "cvat_mask_rle"):
        monkeypatch.setattr(regions, "cvat_mask_rle", counted(regions.cvat_mask_rle))
    return calls


def _import(data: bytes, images, **kw):
    recs, _ = parse_cvat(data, where="bomb.xml")
    return import_review(recs, file_name="bomb.xml", import_sha256=hashlib.sha256(data).hexdigest(),
                         source="cvat/task-7", images=images, exported=[], known_review_keys=set(), categories=CATS,
                         **kw)


def test_a_hundred_masks_on_declared_9000x9000_images_are_rejected_without_decoding(monkeypatch):
    """Was: 88 s per import (and per later run): every mask decoded at the declared 9000x9000
    before the image was matched. Now the declared size is checked against our image first."""
    data = _mask_file(100, "inbox/b1/photos/astronaut.png", (9000, 9000), (0, 0, 9000, 9000))
    assert len(data) < 20_000
    calls = _count_decodes(monkeypatch)
    t0 = time.perf_counter()
    res = _import(data, photo_rows())
    took = time.perf_counter() - t0
    print(f"\n100-mask file: parsed and imported in {took:.3f} s")
    assert took < 10 and calls == []
    assert len(res["rejects"]) == 100 and res["reviews"] == []
    assert all("size mismatch" in r["reason"] and "9000" in r["reason"] for r in res["rejects"])


def test_masks_of_an_unknown_image_are_never_decoded(monkeypatch):
    calls = _count_decodes(monkeypatch)
    res = _import(_mask_file(20, "inbox/b1/photos/elsewhere.png", (9000, 9000), (0, 0, 9000, 9000)), photo_rows())
    assert calls == [] and len(res["rejects"]) == 20 and all("unknown image" in r["reason"] for r in res["rejects"])


def test_mask_decoding_is_bounded_per_file(monkeypatch):
    """A matched image of the right size decodes its masks until the file's budget of mask-box
    pixels is spent; the images after that are rejected with the bound named, per file."""
    monkeypatch.setattr(regions, "MAX_MASK_PIXELS_PER_FILE", 3 * 400 * 600)
    data = _mask_file(5, "inbox/b1/photos/coffee.png", (600, 400), (0, 0, 600, 400))
    calls = _count_decodes(monkeypatch)
    res = _import(data, photo_rows())
    assert len(res["reviews"]) == 3 and len(calls) == 3
    assert len(res["rejects"]) == 2
    assert all("MAX_MASK_PIXELS_PER_FILE" in r["reason"] and "720000" in r["reason"] for r in res["rejects"])
    assert len(_import(data, photo_rows())["reviews"]) == 3  # the next file has a budget of its own


@pytest.mark.parametrize("box", [(0, 0, 600, 400), (599, 399, 1, 1), (10, 0, 30, 400), (0, 5, 600, 20),
                                 (3, 7, 50, 60), (550, 0, 50, 400)])
def test_the_lazy_decode_gives_the_mask_of_the_eager_one(box):
    rng = np.random.default_rng(sum(box))
    left, top, mw, mh = box
    full = np.zeros((400, 600), np.uint8)
    full[top:top + mh, left:left + mw] = rng.random((mh, mw)) < 0.5
    full[top, left] = 1
    full[top + mh - 1, left + mw - 1] = 1
    counts, l2, t2, w2, h2 = mask_to_cvat_rle(encode_rle(full))
    want = cvat_rle_to_mask(counts, l2, t2, w2, h2, 600, 400)
    spec = {"rle": ", ".join(map(str, counts)), "left": l2, "top": t2, "width": w2, "height": h2}
    got = cvat_reader.cvat_mask_rle(spec, 600, 400)
    assert got == want and np.array_equal(decode_rle(got), full)
    for crop in [(left, top, mw, mh)]:  # the same mask given with the crop of the whole box
        c_counts = []
        flat = full[crop[1]:crop[1] + crop[3], crop[0]:crop[0] + crop[2]].ravel()
        edges = np.flatnonzero(np.diff(flat)) + 1
        bounds = np.concatenate([[0], edges, [flat.size]])
        c_counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
        spec = {"rle": ",".join(map(str, c_counts)), "left": crop[0], "top": crop[1], "width": crop[2],
                "height": crop[3]}
        assert cvat_reader.cvat_mask_rle(spec, 600, 400) == encode_rle(full)


def test_the_real_cvat_file_still_imports_its_mask():
    data = cvat_export_bytes()
    recs, _ = parse_cvat(data, where="default.xml")
    res = import_review(recs, file_name="default.xml", import_sha256="x", source="cvat/task-7", images=photo_rows(),
                        exported=[], known_review_keys=set(), categories=CATS)
    assert res["rejects"] == [] and len(res["reviews"]) == 3
    (coffee,) = [r for r in res["human_labels"] if r["image_id"] == photo_rows()[2]["image_id"]]
    assert coffee["mask"] and decode_rle(coffee["mask"]).shape == (400, 600)
