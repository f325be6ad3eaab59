"""Read a CVAT for images 1.1 annotation file back as reviewed annotations (records for
:func:`labelloop.review.importer.import_review`).

The file is parsed with ``defusedxml`` (no entity expansion, no external entities: an XML bomb
is refused, as CVAT's own reader does). A file that is not a CVAT for images 1.1 annotation file
(wrong root, CVAT *for video* tracks, no ``<meta>`` time) raises :class:`~labelloop.formats.cvat.writer.CvatFormatError`
and nothing of it is imported; a problem inside one ``<image>`` rejects that image alone.

One record per ``<image>``: the image is one annotation in labelloop's terms. Identity:

- source: ``cvat/task-<id>`` (``cvat/job-<id>``, ``cvat/project-<id>``) from ``<meta>``, unless given;
- task_id: the image ``name`` (prefixed ``<task_id>/`` in project exports), tool_annotation_id:
  ``frame-<id>``;
- updated_at: ``<meta>``'s ``<updated>`` of the task / job / project (CVAT bumps it when
  annotations are saved), else ``<dumped>``. Re-exports of unchanged work therefore import
  nothing new, and a later save supersedes the earlier version (both kept in the history).

Shapes: ``<box>`` (``rotation`` -> enclosing box with ``rotation`` kept in attributes, pivot the
box centre), ``<polygon>``, ``<mask>`` (CVAT RLE: its runs are checked here, but the mask is
decoded only after the image is matched to ours and its declared size agrees, within a budget
of mask-box pixels per file: :func:`cvat_mask_rle`, :mod:`labelloop.review.regions`),
``<skeleton>`` (keypoints: ``outside="1"`` -> v = 0, ``occluded="1"`` -> v = 1, else v = 2;
attached to the ``<box>`` of the same label and ``group_id``, else its own instance with the box
of its labeled points). Shapes of one label that share a ``group_id`` are one object (CVAT groups
them; labelloop's export does). ``<attribute>`` values are kept in attributes as text (``"0003"`` stays text), as numbers only when
``<meta>`` declares the attribute's ``input_type`` as ``number``, except
``is_crowd``: CVAT has no crowd shape, but its COCO format reads and writes an ``is_crowd``
attribute (a checkbox, or an integer 0 / 1) to mark a region of many objects (COCO
``iscrowd: 1``); labelloop reads that attribute the same way (``true`` / ``1`` -> a crowd region,
``false`` / ``0`` -> one object, anything else rejects the image), on any shape of the object.
``<tag label="..." source="manual">`` (an image-level label) is read as one tag region
(:class:`~labelloop.formats.records.TagRegion`) listing the image's tags; the importer accepts
only ``level: tag`` categories there (:func:`labelloop.review.regions.tag_answers`).
Polylines, points outside a skeleton, ellipses, cuboids and tracks have no labelloop form:
they reject the image (or the file, for tracks) with the reason.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DET
from PIL import Image
from pycocotools import mask as mask_utils

from labelloop.formats.cvat.writer import TOOL, CvatFormatError, check_crop
from labelloop.formats.records import (
    CvatMask,
    ParsedFile,
    PixelRegion,
    Region,
    ReviewRecord,
    TagRegion,
    annotator_pseudonym,
    new_record,
)
from labelloop.geometry.boxes import enclosing_box, rotated_rect_corners

_UNSUPPORTED = {"polyline": "polyline", "points": "points outside a skeleton",
                "ellipse": "ellipse", "cuboid": "cuboid"}


def _text(el, path: str) -> str | None:
    found = el.find(path) if el is not None else None
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _meta(root, where: str, updated_at: str | None = None) -> dict:
    meta = root.find("meta")
    if meta is None:
        raise CvatFormatError(f"{where}: no <meta>: not a CVAT for images 1.1 annotation file")
    for kind in ("task", "job", "project"):
        el = meta.find(kind)
        if el is not None:
            break
    else:
        kind, el = None, None
    if kind == "task" and not _text(el, "id") and _text(meta, "dumped") and el.find("owner") is None:
        # CVAT numbers every task it exports; labelloop's own file (labelloop.formats.cvat.writer.build_cvat_xml)
        # leaves <id/> empty. Taking it as a review would count unreviewed images as reviewed.
        raise CvatFormatError(f"{where}: this is labelloop's own CVAT pre-annotation file (review_out/<batch>/"
                              "annotations.xml: its <task> has no id and no owner), not an export from CVAT: "
                              "upload it to a CVAT task, review there, then export 'CVAT for images 1.1'")
    updated = _text(el, "updated") or _text(meta, "dumped") or updated_at
    if not updated:
        raise CvatFormatError(f"{where}: <meta> has no <updated> or <dumped> time, so the version of these "
                              "annotations is unknown (files written by CVAT carry both; for a file from another "
                              "writer, such as datumaro's cvat exporter, pass the version time explicitly)")
    user = _text(el, "assignee/username") or _text(el, "owner/username")
    ident = _text(el, "id")
    return {"kind": kind, "id": ident, "updated": updated, "annotator": annotator_pseudonym(TOOL, user)}


def _num(el, key: str, name: str) -> float:
    try:
        v = float(el.attrib[key])
    except KeyError:
        raise ValueError(f"{name}: missing {key!r}") from None
    except ValueError:
        raise ValueError(f"{name}: {key}={el.attrib[key]!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: {key} is not finite")
    return v


def _points(el, name: str) -> list[float]:
    raw = el.attrib.get("points")
    if not raw:
        raise ValueError(f"{name}: missing 'points'")
    out = []
    for pair in raw.split(";"):
        xy = pair.split(",")
        if len(xy) != 2:
            raise ValueError(f"{name}: point {pair!r} is not 'x,y'")
        try:
            out += [float(xy[0]), float(xy[1])]
        except ValueError:
            raise ValueError(f"{name}: point {pair!r} is not numeric") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name}: non-finite point")
    return out


def _numeric_attributes(root) -> frozenset[str]:
    """Names of the attributes ``<meta>`` declares with ``<input_type>number</input_type>``."""
    meta = root.find("meta")
    if meta is None:
        return frozenset()
    return frozenset(_text(a, "name") or "" for a in meta.iter("attribute")
                     if (_text(a, "input_type") or "").strip().lower() == "number")


def _attributes(el, numeric: frozenset[str] = frozenset()) -> dict:
    """A shape's ``<attribute>`` values: text as written (``"0003"`` stays ``"0003"``), a number
    for the attributes ``<meta>`` declares as numbers (``numeric``).

    Raises:
        ValueError: a declared number whose text is not a finite number (``"abc"``, ``"nan"``).
    """
    out: dict[str, float | str] = {}
    for a in el.findall("attribute"):
        value = (a.text or "").strip()
        key = a.attrib.get("name", "")
        if key not in numeric:
            out[key] = value
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"attribute {key!r}: {value[:40]!r} is not a finite number (<meta> declares it a number)")
        out[key] = number
    return out


def _crowd_flag(value, name: str) -> bool:
    """CVAT's ``is_crowd`` attribute value (checkbox ``true`` / ``false`` or number 0 / 1) -> bool."""
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0", ""):
        return False
    raise ValueError(f"{name}: is_crowd {value!r} (want true / false or 1 / 0)")


def _skeleton(el, name: str, names: dict[str, list[str]]) -> tuple[list[float], list[float]]:
    """(flat x, y, v keypoints in the category's order, extent of the labeled points)."""
    label = el.attrib.get("label")
    order = names.get(label)
    if not order:
        raise ValueError(f"{name}: skeleton of {label!r}, a category without keypoints in the config")
    got: dict[str, tuple[float, float, int]] = {}
    for pt in el:
        if pt.tag != "points":
            continue
        kp = pt.attrib.get("label")
        if kp not in order:
            raise ValueError(f"{name}: unknown keypoint {kp!r} of {label!r} (known: {', '.join(order)})")
        x, y = _points(pt, f"{name} keypoint {kp}")[:2]
        v = 0 if pt.attrib.get("outside") == "1" else 1 if pt.attrib.get("occluded") == "1" else 2
        got[kp] = (x, y, v)
    flat, xs, ys = [], [], []
    for kp in order:
        x, y, v = got.get(kp, (0.0, 0.0, 0))
        flat += [0.0, 0.0, 0.0] if v == 0 else [x, y, float(v)]
        if v:
            xs.append(x)
            ys.append(y)
    extent = [min(xs), min(ys), max(xs), max(ys)] if xs else [0.0, 0.0, 0.0, 0.0]
    return flat, extent


def _mask_runs(rle: str, left: int, top: int, width: int, height: int, image_width: int,
               image_height: int) -> list[int]:
    """The runs of a CVAT mask's ``rle`` text, checked as
    :func:`labelloop.formats.cvat.writer.cvat_rle_to_mask` checks them, without decoding anything
    (work in the number of runs, not of pixels). ValueError with the reason."""
    try:
        counts = [int(c) for c in rle.split(",")]
    except ValueError:
        raise ValueError("rle, left, top, width and height must be integers") from None
    check_crop(left, top, width, height, image_width, image_height)
    if not counts or any(c < 0 for c in counts):
        raise ValueError("mask rle must be a non-empty list of non-negative run lengths")
    if any(c > width * height for c in counts):
        raise ValueError(f"mask rle runs must lie in 0..{width * height} (the crop's pixels)")
    if sum(counts) != width * height:
        raise ValueError(f"mask rle runs cover {sum(counts)} pixels but the crop {width}x{height} has {width * height}")
    return counts


def cvat_mask_rle(mask: CvatMask, image_width: int, image_height: int) -> str:
    """Decode a CVAT mask (:class:`~labelloop.formats.records.CvatMask`: row-major runs over its
    crop, background first) into COCO RLE JSON of the full ``image_height x image_width`` mask,
    the same text :func:`labelloop.formats.cvat.writer.cvat_rle_to_mask` gives.

    Work and memory are proportional to the crop (about 2 bytes per crop pixel, plus 8 per run
    of the result), not to the image: the column-major runs of the full image are computed from
    the crop's transitions, without a full-size array. Callers bound the crop pixels they decode per file
    (:data:`labelloop.review.regions.MAX_MASK_PIXELS_PER_FILE`).

    Raises:
        ValueError: runs that are negative, longer than the crop or do not add up to it, a crop
            outside the image, non-integer fields.
    """
    left, top, mw, mh = int(mask["left"]), int(mask["top"]), int(mask["width"]), int(mask["height"])
    counts = _mask_runs(mask["rle"], left, top, mw, mh, image_width, image_height)
    runs = np.asarray(counts, dtype=np.int64)
    crop = np.repeat((np.arange(runs.size) % 2).astype(np.uint8), runs).reshape(mh, mw)
    # Pixel (row top + i, column left + j) is at top + i + (left + j) * image_height in the full
    # image's column-major order (COCO's), so the full mask changes value exactly where the crop
    # does down a column, at the top and bottom of a crop column, and nowhere else.
    lead, total = left * image_height + top, image_width * image_height
    down = np.flatnonzero(crop[1:] != crop[:-1])  # row-major index over rows 1.. of the crop
    i, j = np.divmod(down, mw)
    parts = [lead + j * image_height + i + 1]
    if mh < image_height:  # background above and below every crop column
        parts.append(lead + np.flatnonzero(crop[0]) * image_height)
        parts.append(lead + np.flatnonzero(crop[mh - 1]) * image_height + mh)
    else:  # full-height crop: a column continues the one before it
        before = np.concatenate([[0], crop[mh - 1, :-1]]).astype(np.uint8)
        parts.append(lead + np.flatnonzero(crop[0] != before) * image_height)
        if crop[mh - 1, mw - 1]:
            parts.append(np.array([lead + (mw - 1) * image_height + mh], dtype=np.int64))
    trans = np.sort(np.concatenate(parts))
    trans = trans[trans < total]
    out = np.diff(np.concatenate([[0], trans, [total]]))
    rle = mask_utils.frPyObjects({"size": [image_height, image_width], "counts": out.tolist()},
                                 image_height, image_width)
    return json.dumps({"size": [image_height, image_width], "counts": rle["counts"].decode("ascii")})


def _image_regions(img, width: int, height: int, keypoints: dict[str, list[str]],
                   numeric: frozenset[str] = frozenset()) -> list[Region]:
    """Regions of one ``<image>`` in the pixel form of :mod:`labelloop.review.regions`; ValueError on a problem."""
    objects: dict[tuple, dict] = {}
    skeletons = []
    tags: list[str] = []
    order = 0
    for i, el in enumerate(img):
        name = f"{el.tag} #{i}" + (f" ({el.attrib.get('label')})" if el.attrib.get("label") else "")
        if el.tag == "tag":  # an image-level label
            if not el.attrib.get("label"):
                raise ValueError(f"{name}: a tag without a label")
            tags.append(el.attrib["label"])
            continue
        if el.tag in _UNSUPPORTED:
            raise ValueError(f"{name}: {_UNSUPPORTED[el.tag]} shapes have no labelloop form")
        if el.tag not in ("box", "polygon", "mask", "skeleton"):
            raise ValueError(f"{name}: unknown element <{el.tag}>")
        label = el.attrib.get("label")
        group = el.attrib.get("group_id") or "0"
        key = (label, group) if group != "0" else (label, f"#{i}")
        if el.tag == "skeleton":
            flat, extent = _skeleton(el, name, keypoints)
            skeletons.append((key, flat, extent, name))
            continue
        obj = objects.get(key)
        if obj is None:
            obj = objects[key] = {"kind": "px", "region_id": f"#{i}", "category": label, "bbox": None,
                                  "polygons": None, "mask": None, "keypoints": None, "attributes": {},
                                  "occluded": False, "original_width": width, "original_height": height,
                                  "_order": order}
            order += 1
        obj["occluded"] = obj["occluded"] or el.attrib.get("occluded") == "1"
        attrs = _attributes(el, numeric)
        if "is_crowd" in attrs:
            obj["iscrowd"] = _crowd_flag(attrs.pop("is_crowd"), name) or obj.get("iscrowd", False)
        obj["attributes"].update(attrs)
        if el.attrib.get("source"):
            obj["attributes"]["cvat_source"] = el.attrib["source"]
        if el.tag == "box":
            if obj["bbox"] is not None:
                raise ValueError(f"{name}: two boxes in group {group} of {label!r}")
            x0, y0, x1, y1 = (_num(el, k, name) for k in ("xtl", "ytl", "xbr", "ybr"))
            rotation = float(el.attrib.get("rotation") or 0.0) % 360.0
            if min(rotation, 360.0 - rotation) > 1e-6:
                obj["attributes"].update(rotation=rotation, rotation_pivot="center",
                                         rotated_box_xywh=[x0, y0, x1 - x0, y1 - y0])
                x0, y0, x1, y1 = enclosing_box(rotated_rect_corners(x0, y0, x1 - x0, y1 - y0, rotation, "center"))
            obj["bbox"] = [x0, y0, x1, y1]
        elif el.tag == "polygon":
            pts = _points(el, name)
            if len(pts) < 6:
                raise ValueError(f"{name}: a polygon needs at least 3 points")
            obj["polygons"] = (obj["polygons"] or []) + [pts]
        else:  # mask: checked here, decoded only for a matched image of this size (cvat_mask_rle)
            if obj.get("cvat_mask") is not None:
                raise ValueError(f"{name}: two masks in group {group} of {label!r}")
            try:
                rle = el.attrib["rle"]
                left, top, mw, mh = (int(el.attrib[k]) for k in ("left", "top", "width", "height"))
            except KeyError as exc:
                raise ValueError(f"{name}: missing {exc.args[0]!r}") from None
            except ValueError:
                raise ValueError(f"{name}: rle, left, top, width and height must be integers") from None
            try:
                _mask_runs(rle, left, top, mw, mh, width, height)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            obj["cvat_mask"] = {"rle": rle, "left": left, "top": top, "width": mw, "height": mh}
    for key, flat, extent, name in skeletons:
        obj = objects.get(key) if key[1][:1] != "#" else None
        if obj is None:
            if extent[2] - extent[0] <= 0 or extent[3] - extent[1] <= 0:
                raise ValueError(f"{name}: a skeleton without a grouped box needs labeled points spanning an area")
            obj = objects[key] = {"kind": "px", "region_id": name.split(" (")[0].replace("skeleton ", "sk"),
                                  "category": key[0], "bbox": extent, "polygons": None, "mask": None,
                                  "attributes": {}, "occluded": False, "original_width": width,
                                  "original_height": height, "_order": order}
            order += 1
        obj["keypoints"] = flat
    out: list[Region] = [cast(PixelRegion, {k: v for k, v in o.items() if k != "_order"})  # less its sort key
                         for o in sorted(objects.values(), key=lambda o: o["_order"])]
    if tags:
        out.append(TagRegion(kind="tag", region_id="tags", category=None, value={"choices": tags}))
    return out


def parse_cvat(data: bytes, *, where: str, keypoints: dict[str, list[str]] | None = None,
               updated_at: str | None = None) -> tuple[list[ReviewRecord], dict]:
    """Parse CVAT for images 1.1 XML bytes into review records (see the module docstring).

    Args:
        data: the file's bytes (size-checked by the caller).
        where: the file name, for messages and REJECTS rows.
        keypoints: ``{category: [keypoint names]}`` of the project (for ``<skeleton>``).
        updated_at: the version time (ISO 8601) to use when ``<meta>`` has neither ``<updated>``
            nor ``<dumped>``: CVAT writes both, datumaro's ``cvat`` exporter (1.13) neither. A
            time in the file always wins.

    Returns:
        ``(records, meta)``: :class:`~labelloop.formats.records.ReviewRecord` s with ``tool = "cvat"``,
        ``allow_name = True`` (a unique bare file name matches), ``image_ref`` the image ``name``, pixel ``regions``; ``meta`` holds
        the ``kind`` (task, job, project) and ``id`` of the container, ``updated`` and ``annotator``.

    Raises:
        CvatFormatError: not XML, an XML bomb or external entity, a root other than
            ``<annotations>``, a ``<version>`` other than 1.1, tracks (CVAT for video), or no time
            in ``<meta>``.
    """
    try:
        root = DET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CvatFormatError(f"{where}: refused unsafe XML ({type(exc).__name__})") from None
    except DET.ParseError as exc:
        raise CvatFormatError(f"{where}: not valid XML ({exc})") from None
    except LookupError as exc:  # <?xml encoding="..."?> names a codec Python does not know
        raise CvatFormatError(f"{where}: not readable XML ({exc})") from None
    if root.tag != "annotations":
        raise CvatFormatError(f"{where}: root element <{root.tag}> is not <annotations>: not a CVAT annotation file")
    version = _text(root, "version")
    if version != "1.1":
        raise CvatFormatError(f"{where}: <version> is {version!r}; labelloop reads CVAT for images 1.1")
    if root.find("track") is not None:
        raise CvatFormatError(f"{where}: has <track> elements (CVAT for video 1.1); export 'CVAT for images 1.1'")
    meta = _meta(root, where, updated_at)
    numeric = _numeric_attributes(root)
    records = []
    for el in root.findall("image"):
        name = el.attrib.get("name") or ""
        frame = el.attrib.get("id", "")
        task_prefix = f"{el.attrib['task_id']}/" if el.attrib.get("task_id") else ""
        rec = new_record(TOOL, task_prefix + name, "cvat-1.1", allow_name=True, tool_annotation_id=f"frame-{frame}",
                         updated_at=meta["updated"], annotator=meta["annotator"], image_ref=name or None,
                         project=meta["id"], item=f"image {task_prefix + name} (frame {frame})")
        try:
            if not name:
                raise ValueError("<image> without a name")
            try:
                width, height = int(el.attrib["width"]), int(el.attrib["height"])
            except (KeyError, ValueError):
                raise ValueError("<image> needs integer width and height") from None
            limit = Image.MAX_IMAGE_PIXELS  # None: Pillow's guard turned off
            if width <= 0 or height <= 0 or (limit is not None and width * height > limit):
                # labelloop holds no image over Pillow's limit, so no image of this size can match;
                # refused here, before any region of it is looked at
                raise ValueError(f"<image> size {width}x{height} is not positive or larger than any image labelloop "
                                 f"accepts ({Image.MAX_IMAGE_PIXELS} pixels, Pillow's decompression-bomb limit)")
            rec["regions"] = _image_regions(el, width, height, keypoints or {}, numeric)
        except ValueError as exc:
            rec["error"] = str(exc)
        records.append(rec)
    return records, meta


def looks_like(content: Any) -> bool:
    """Whether ``content`` (a file's bytes; parsed JSON is never CVAT) is XML, which labelloop reads
    as CVAT for images 1.1."""
    return isinstance(content, (bytes, bytearray)) and content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def parse(content: bytes, *, where: str, fallback_time: str, keypoints: dict[str, list[str]] | None = None
          ) -> ParsedFile:
    """A CVAT for images 1.1 file's records (:func:`parse_cvat`, ``fallback_time`` when ``<meta>``
    has no time) and its container (``task-12``, ``job-3``, ``project-4``) when ``<meta>`` names one.

    Raises:
        CvatFormatError: see :func:`parse_cvat`.
    """
    records, meta = parse_cvat(content, where=where, keypoints=keypoints, updated_at=fallback_time)
    container = f"{meta['kind']}-{meta['id']}" if meta.get("kind") and meta.get("id") else None
    return {"tool": TOOL, "format": "cvat-1.1", "records": records, "container": container}
