"""CVAT for images 1.1 XML: export a batch with pre-annotations, and the mask RLE CVAT uses.

Format: CVAT's "CVAT for images 1.1" annotation file (CVAT docs, "CVAT for images"; CVAT's own
reader and writer: ``cvat/apps/dataset_manager/formats/cvat.py``)::

    <annotations>
      <version>1.1</version>
      <meta><task><id/><name/><size/><mode>annotation</mode><updated/>...<labels>...</labels></task>
            <dumped/></meta>
      <image id="0" name="inbox/b1/photos/a.png" width="512" height="512">
        <box label="person" source="auto" occluded="0" xtl="30.00" ytl="40.00" xbr="360.00"
             ybr="512.00" z_order="0"><attribute name="score">0.91</attribute></box>
        <polygon label="cat" source="auto" occluded="0" points="x0,y0;x1,y1;..." z_order="0"/>
        <mask label="cat" source="auto" occluded="0" rle="c0, c1, ..." left="l" top="t"
              width="w" height="h" z_order="0"/>
        <skeleton label="person" source="auto" z_order="0">
          <points label="nose" source="auto" outside="0" occluded="0" points="x,y"/> ...
        </skeleton>
      </image>
    </annotations>

Coordinates are pixels of the image as CVAT shows it (our EXIF-corrected image): boxes
``xtl, ytl, xbr, ybr`` (xyxy) written with 2 decimals as CVAT writes them, ``rotation`` in
degrees clockwise about the box centre. CVAT's mask RLE (``<mask rle>``) counts runs of the
``width x height`` crop at ``(left, top)`` in row-major order (y outer, x inner), starting with a
run of background (0) pixels; it is *not* COCO's column-major RLE (:func:`mask_to_cvat_rle`,
:func:`cvat_rle_to_mask`).

Image names are our workspace-relative ``uri`` (``inbox/<batch>/<source_path>``), so a CVAT task
made from the workspace (CVAT's shared storage mounted at the workspace root, or files uploaded
with their folders) matches the annotations by full path; imports (:mod:`labelloop.formats.cvat.reader`)
match by full path or image_id, else by a bare file name that is unique in the workspace, never by
position.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any, Mapping, Sequence
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

import numpy as np

from labelloop.geometry.keypoints import NOT_LABELED, OCCLUDED
from labelloop.geometry.masks import decode_rle, encode_rle, mask_to_polygons
from labelloop.tables.schemas import ImageRow, PredictionRow

TOOL = "cvat"
VERSION = "1.1"
SCORE_ATTRIBUTE = "score"


class CvatFormatError(ValueError):
    """A file that is not a CVAT for images 1.1 annotation file (message names file and problem)."""


# --------------------------------------------------------------------------- mask RLE


def mask_to_cvat_rle(mask_rle_json: str) -> tuple[list[int], int, int, int, int]:
    """COCO RLE JSON of a full-image mask -> CVAT ``(rle counts, left, top, width, height)``.

    The crop is the mask's tight box; counts alternate background / foreground runs over the crop
    in row-major order, starting with background (a leading 0 when the crop's first pixel is
    foreground). Sum of counts = ``width * height``.

    Raises:
        ValueError: a malformed RLE, or an empty mask (CVAT has no empty mask shape).
    """
    m = decode_rle(mask_rle_json).astype(bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("empty mask: CVAT has no empty mask shape")
    top, bottom, left, right = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    flat = m[top:bottom + 1, left:right + 1].ravel(order="C").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs], left, top, right - left + 1, bottom - top + 1


def check_crop(left: int, top: int, width: int, height: int, image_width: int, image_height: int) -> None:
    """Raise ValueError unless a CVAT mask crop (pixels) has a positive size and lies inside the image."""
    if width <= 0 or height <= 0 or left < 0 or top < 0:
        raise ValueError(f"mask crop must have left, top >= 0 and positive size; got left={left} top={top} "
                         f"width={width} height={height}")
    if left + width > image_width or top + height > image_height:
        raise ValueError(f"mask crop {width}x{height} at ({left}, {top}) lies outside the "
                         f"{image_width}x{image_height} image")


def cvat_rle_to_mask(counts: Sequence[int], left: int, top: int, width: int, height: int,
                     image_width: int, image_height: int) -> str:
    """CVAT mask (row-major runs over the crop, starting with background) -> COCO RLE JSON of
    the full ``image_height x image_width`` mask.

    Raises:
        ValueError: a negative run or size, a run longer than the crop, runs that do not add up
            to ``width * height``, or a crop that does not lie inside the image.
    """
    check_crop(left, top, width, height, image_width, image_height)
    counts = list(counts)
    if not counts or any(c < 0 for c in counts):
        raise ValueError("mask rle must be a non-empty list of non-negative run lengths")
    if any(c > width * height for c in counts):  # also keeps int64 from overflowing
        raise ValueError(f"mask rle runs must lie in 0..{width * height} (the crop's pixels)")
    runs = np.asarray(counts, dtype=np.int64)
    if int(runs.sum()) != width * height:
        raise ValueError(f"mask rle runs cover {int(runs.sum())} pixels but the crop {width}x{height} has {width * height}")
    values = np.arange(runs.size) % 2  # background first
    crop = np.repeat(values.astype(np.uint8), runs).reshape(height, width)
    full = np.zeros((image_height, image_width), np.uint8)
    full[top:top + height, left:left + width] = crop
    return encode_rle(full)


# --------------------------------------------------------------------------- export


def _f(v: float) -> str:
    return f"{float(v):.2f}"


class _Writer:
    def __init__(self) -> None:

        self.buf = io.StringIO()
        self.gen = XMLGenerator(self.buf, "utf-8", short_empty_elements=True)
        self.level = 0
        self.started = False

    def _nl(self) -> None:
        if self.started:
            self.gen.ignorableWhitespace("\n" + "  " * self.level)
        self.started = True

    def open(self, tag: str, attrs: dict | None = None) -> None:
        self._nl()
        self.gen.startElement(tag, AttributesImpl({k: str(v) for k, v in (attrs or {}).items()}))
        self.level += 1

    def close(self, tag: str) -> None:
        self.level -= 1
        self._nl()
        self.gen.endElement(tag)

    def leaf(self, tag: str, text: str = "", attrs: dict | None = None) -> None:
        self._nl()
        self.gen.startElement(tag, AttributesImpl({k: str(v) for k, v in (attrs or {}).items()}))
        if text:
            self.gen.characters(text)
        self.gen.endElement(tag)


def _meta(w: _Writer, task_name: str, n_images: int, categories: list[str], keypoints: dict[str, list[str]],
          now: str, tag_categories: Sequence[str] = ()) -> None:
    w.open("meta")
    w.open("task")
    for k, v in (("id", ""), ("name", task_name), ("size", str(n_images)), ("mode", "annotation"),
                 ("overlap", "0"), ("created", now), ("updated", now), ("subset", "default"),
                 ("start_frame", "0"), ("stop_frame", str(max(n_images - 1, 0))), ("frame_filter", "")):
        w.leaf(k, v)
    w.open("labels")
    for c in categories:
        w.open("label")
        w.leaf("name", c)
        w.leaf("type", "skeleton" if c in keypoints else "tag" if c in tag_categories else "any")
        w.open("attributes")
        w.open("attribute")
        for k, v in (("name", SCORE_ATTRIBUTE), ("mutable", "False"), ("input_type", "number"),
                     ("default_value", "0"), ("values", "0\n1\n0.0001")):
            w.leaf(k, v)
        w.close("attribute")
        w.close("attributes")
        w.close("label")
    w.close("labels")
    w.close("task")
    w.leaf("dumped", now)
    w.close("meta")


def _shape_common(p: PredictionRow) -> dict:
    return {"label": p["category"], "source": "auto", "occluded": "0"}


def _score(w: _Writer, p: PredictionRow) -> None:
    if p.get("score") is not None:
        w.leaf("attribute", f"{float(p['score']):.4f}", {"name": SCORE_ATTRIBUTE})


def build_cvat_xml(images: Sequence[ImageRow], predictions: Sequence[PredictionRow], categories: list[str], *,
                   task_name: str,
                   mask_shape: str = "mask", keypoints: dict[str, list[str]] | None = None,
                   now: str | None = None, tag_categories: Sequence[str] = (),
                   tags: Mapping[str, Sequence[str]] | None = None) -> bytes:
    """CVAT for images 1.1 annotation file of ``images`` with ``predictions`` as pre-annotations.

    Args:
        images: IMAGES rows to send (``image_id, uri, width, height``); one ``<image>`` per distinct
            image_id, in ``uri`` order, ``id`` = 0.. (CVAT frame numbers), ``name`` = ``uri``.
        predictions: PREDICTIONS rows (``category, bbox`` xyxy px, ``score``, ``mask`` RLE JSON or
            None, optional ``keypoints`` flat x, y, v). Each gives a ``<box>`` with a ``score``
            attribute; one with a mask also a ``<mask>`` (``mask_shape="mask"``, CVAT's RLE) or one
            ``<polygon>`` per part (``"polygon"``, :func:`labelloop.geometry.masks.mask_to_polygons`); one
            with keypoints of a category in ``keypoints`` a ``<skeleton>`` (``v = 0`` ->
            ``outside="1"``, ``v = 1`` -> ``occluded="1"``). Shapes of one prediction share a
            ``group_id`` so CVAT keeps them together.
        categories: label names, written into ``<meta>`` with a numeric ``score`` attribute.
        task_name: ``<meta><task><name>``.
        mask_shape: ``"mask"`` or ``"polygon"``.
        keypoints: ``{category: [keypoint names]}``.
        now: ISO 8601 time for ``created`` / ``updated`` / ``dumped`` (default: now, UTC).
        tag_categories: the ``level: tag`` categories among ``categories``: their ``<meta>`` label
            has ``<type>tag</type>`` (CVAT's image-level label type), the others ``any``.
        tags: ``image_id -> tag categories`` pre-annotated on that image: one ``<tag
            label=... source="auto">`` each, first in its ``<image>`` (CVAT for images 1.1).

    Returns:
        UTF-8 XML bytes.

    Raises:
        ValueError: an unknown ``mask_shape``, or a malformed mask.
    """
    if mask_shape not in ("mask", "polygon"):
        raise ValueError(f"mask_shape must be 'mask' or 'polygon', got {mask_shape!r}")
    keypoints = keypoints or {}
    now = now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    chosen: dict[str | None, ImageRow] = {}
    for img in sorted(images, key=lambda r: (r.get("duplicate_of") is not None, r["uri"])):
        chosen.setdefault(img["image_id"], img)
    by_image: dict[str, list[PredictionRow]] = {}
    for p in predictions:
        by_image.setdefault(p["image_id"], []).append(p)
    w = _Writer()
    w.gen.startDocument()
    w.open("annotations")
    w.leaf("version", VERSION)
    _meta(w, task_name, len(chosen), categories, keypoints, now, tag_categories)
    group = 0
    for frame, img in enumerate(sorted(chosen.values(), key=lambda r: r["uri"])):
        # images to send are ok rows: their sha256 and size are known
        assert img["image_id"] is not None and img["width"] is not None and img["height"] is not None
        w.open("image", {"id": frame, "name": img["uri"], "width": int(img["width"]), "height": int(img["height"])})
        for t in (tags or {}).get(img["image_id"], ()):
            w.leaf("tag", attrs={"label": t, "source": "auto"})
        preds = sorted(by_image.get(img["image_id"], []), key=lambda p: (-float(p["score"]), p["prediction_id"]))
        for p in preds:
            group += 1
            x0, y0, x1, y1 = p["bbox"]
            w.open("box", _shape_common(p) | {"xtl": _f(x0), "ytl": _f(y0), "xbr": _f(x1), "ybr": _f(y1),
                                             "z_order": 0, "group_id": group})
            _score(w, p)
            w.close("box")
            mask = p.get("mask")
            if mask:
                if mask_shape == "mask":
                    counts, left, top, mw, mh = mask_to_cvat_rle(mask)
                    w.open("mask", _shape_common(p) | {"rle": ", ".join(map(str, counts)), "left": left, "top": top,
                                                      "width": mw, "height": mh, "z_order": 0, "group_id": group})
                    _score(w, p)
                    w.close("mask")
                else:
                    for poly in mask_to_polygons(decode_rle(mask)):
                        pts = ";".join(f"{_f(poly[i])},{_f(poly[i + 1])}" for i in range(0, len(poly), 2))
                        w.open("polygon", _shape_common(p) | {"points": pts, "z_order": 0, "group_id": group})
                        _score(w, p)
                        w.close("polygon")
            names = keypoints.get(p["category"])
            extra: Mapping[str, Any] = p  # keypoints: not a PREDICTIONS column, a caller's row may carry them
            if names and extra.get("keypoints"):
                w.open("skeleton", {"label": p["category"], "source": "auto", "z_order": 0, "group_id": group})
                kp = extra["keypoints"]
                for i, name in enumerate(names):
                    x, y, v = (float(t) for t in kp[3 * i:3 * i + 3])
                    w.leaf("points", attrs={"label": name, "source": "auto", "outside": int(v == NOT_LABELED),
                                            "occluded": int(v == OCCLUDED), "points": f"{_f(x)},{_f(y)}"})
                w.close("skeleton")
        w.close("image")
    w.close("annotations")
    w.gen.ignorableWhitespace("\n")
    w.gen.endDocument()
    return w.buf.getvalue().encode("utf-8")
