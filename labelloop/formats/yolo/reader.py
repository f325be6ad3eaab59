"""YOLO datasets (Ultralytics' layout, Label Studio's "YOLO" export) imported as reviewed labels.

Format sources: Ultralytics, https://docs.ultralytics.com/datasets/detect/ (and ``/segment/``,
``/pose/``); Label Studio's "YOLO" / "YOLO with Images" export (label-studio-converter's
``convert_to_yolo``). A YOLO dataset arrives as one **zip** (a review-inbox item is a file):

- Ultralytics: ``data.yaml`` (``names`` as a list or an ``index -> name`` mapping; ``kpt_shape:
  [K, 2 | 3]`` for pose; optionally ``kpt_names: {class index: [K names]}``), ``labels/<split>/*.txt``
  and possibly ``images/<split>/*``;
- Label Studio: ``classes.txt`` (one class name a line, line ``i`` is class ``i``), ``notes.json``
  (the same classes with ids, not needed here), ``images/*`` (when exported with images) and
  ``labels/*.txt``.

The dataset root is the zip's top level, or one folder under it (``dataset/data.yaml``, the
layout Ultralytics HUB asks for): the shallowest folder holding ``data.yaml`` or ``classes.txt``
whose ``labels/`` holds at least one ``.txt`` (:func:`dataset_root`). When both class files are
there, ``data.yaml`` is read.

Label files: one ``.txt`` per image (same stem), one object a line, fields separated by
whitespace, class indices 0-based into the names, every coordinate normalized by the image
width (x) or height (y) to [0, 1]:

- detect: ``cls cx cy w h`` (box centre and size);
- segment: ``cls x1 y1 x2 y2 ... xn yn`` (one polygon, n >= 3; an odd field count >= 7);
  a 5-field line in a segment file is read as a box;
- pose (``kpt_shape`` in data.yaml): ``cls cx cy w h`` then K keypoints of ``x y v`` (``kpt_shape
  [K, 3]``; v as in COCO: 0 not labeled, 1 labeled not visible, 2 visible) or ``x y``
  (``[K, 2]``: a point at ``0 0`` is not labeled, any other is visible, v = 2).

An empty label file (or one of blank lines) is a reviewed negative: an image without objects.

One record per label file:

- identity: source ``yolo/<zip stem>`` unless given (:func:`labelloop.formats.records.default_source`);
  task_id = the label file's path in the dataset (``labels/train/a.txt``); tool_annotation_id
  ``yolo-label``; updated_at = the label member's zip date_time read as UTC (a zip stores local
  time without a zone), else -- a date before 1980-01-02, the zip format's "no date" --
  ``fallback_time`` (the zip file's modification time);
- image matching: when the zip holds the image (``images/<same sub path>/<stem>.<ext>``, else the
  only image anywhere under ``images/`` with that stem), ``image_ref`` is its path in the dataset
  (``images/train/a.png``) with ``allow_name``: it matches our image by path, by a release file
  name (``<image_id[:16]>.ext``) or by its file name when exactly one ingested image has it
  (:class:`labelloop.review.matching.ImageIndex`). When the zip holds no image of that stem,
  ``image_ref`` is the stem alone (``a``) and the record's ``match_stem`` is set: besides an
  image_id prefix stem (labelloop's release names), it matches the one ingested image whose
  ``source_path`` file name has that stem (``a.png``, ``a.jpg``...); several such images -> the
  record is rejected as ambiguous;
- annotator ``yolo-import`` (a YOLO dataset names no reviewer); ``tool`` ``yolo``; ``format``
  ``yolo-detect``, ``yolo-segment`` (a file with at least one polygon) or ``yolo-pose``.

Regions are :class:`labelloop.formats.records.NormRegion` (``kind: "norm"``), still normalized:
they become pixels of *our* image (its EXIF-corrected ``width x height`` in IMAGES) only once the
image is matched (:func:`labelloop.review.regions.to_pixels`): ``x_px = x * width``, ``y_px = y *
height``; box edges outside the image are clipped to it (as Ultralytics' loader clips them); a
polygon becomes a mask (pycocotools rasterization) with the box of its vertices; pose keypoints
are reordered by name into the project's keypoint order (``kpt_names`` when data.yaml gives
them for the class, else the config's order, which must have K names); a class whose
keypoints are all unlabeled carries none.

A problem of one label file (a malformed line, a class index outside the names, a coordinate
outside [0, 1], keypoints the config cannot take) rejects that image alone, with a reason naming
the file and line; a class name that is not a project category is rejected per image when the
regions are converted. Whatever makes the dataset unreadable (no class names, data.yaml that is
not a YAML mapping, a bad ``kpt_shape``) raises :class:`YoloFormatError`.
"""

from __future__ import annotations

import datetime as dt
import math
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from labelloop.formats.records import NormRegion, ParsedFile, Region, ReviewRecord, new_record

TOOL = "yolo"
ANNOTATOR = "yolo-import"
TOOL_ANNOTATION_ID = "yolo-label"
DATA_YAML = "data.yaml"
CLASSES_TXT = "classes.txt"
#: Image file extensions Ultralytics reads (``ultralytics.data.utils.IMG_FORMATS``), lower case.
IMAGE_EXTS = frozenset({"bmp", "dng", "heic", "jpeg", "jpg", "mpo", "pfm", "png", "tif", "tiff", "webp"})
#: How far outside [0, 1] a normalized value may lie (rounding of other writers) before the line is
#: refused; such values are clipped to [0, 1].
NORM_TOL = 1e-4
_NO_DATE = dt.datetime(1980, 1, 2, tzinfo=dt.timezone.utc)


class YoloFormatError(ValueError):
    """A zip that is not a readable YOLO dataset as a whole (message names the file and problem)."""


@dataclass(frozen=True)
class YoloArchive:
    """A YOLO dataset as read from a zip (:func:`read_archive`), what :func:`parse` takes.

    ``root``: the dataset folder in the zip (``""`` or ``"name/"``); ``texts``: member path ->
    bytes of the files read (``data.yaml``, ``classes.txt`` and every ``labels/**.txt`` under
    the root); ``times``: member path -> zip ``date_time`` (year, month, day, hour, minute,
    second) of the label files; ``images``: member paths of the image files under
    ``<root>images/``."""

    root: str
    texts: dict[str, bytes]
    times: dict[str, tuple[int, int, int, int, int, int]] = field(default_factory=dict)
    images: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the zip's layout


def _is_label(name: str, root: str) -> bool:
    return name.startswith(root + "labels/") and name.lower().endswith(".txt") and not name.endswith("/")


def dataset_root(names: Iterable[str]) -> str | None:
    """The dataset root of a zip's member ``names``, or None when they are not a YOLO dataset.

    The root is ``""`` (the zip's top level) or one folder (``"name/"``) that holds ``data.yaml``
    or ``classes.txt`` and whose ``labels/`` folder (at any depth below) holds a ``.txt``; the
    shallowest such root wins."""
    names = [n for n in names if isinstance(n, str)]
    roots = sorted({n[: -len(leaf)] for n in names for leaf in (DATA_YAML, CLASSES_TXT)
                    if n.rsplit("/", 1)[-1] == leaf and n.count("/") <= 1}, key=lambda r: (len(r), r))
    for root in roots:
        if any(_is_label(n, root) for n in names):
            return root
    return None


def looks_like(content: Any) -> bool:
    """Whether ``content`` is a YOLO dataset: a :class:`YoloArchive`, or a list / tuple of zip
    member names with a :func:`dataset_root`."""
    if isinstance(content, YoloArchive):
        return True
    return isinstance(content, (list, tuple)) and dataset_root(content) is not None


def needed_members(names: Sequence[str], root: str) -> list[str]:
    """The members :func:`parse` reads, in name order: the root's ``data.yaml`` and
    ``classes.txt`` (when present) and every ``labels/**.txt`` under the root."""
    wanted = {root + DATA_YAML, root + CLASSES_TXT}
    return sorted(n for n in names if n in wanted or _is_label(n, root))


def image_members(names: Sequence[str], root: str) -> tuple[str, ...]:
    """The image files under ``<root>images/`` (by extension, :data:`IMAGE_EXTS`), in name order."""
    return tuple(sorted(n for n in names if n.startswith(root + "images/") and "." in n.rsplit("/", 1)[-1]
                        and n.rsplit(".", 1)[-1].lower() in IMAGE_EXTS))


def read_archive(members: Sequence[tuple[str, tuple[int, int, int, int, int, int]]],
                 read: Callable[[str], bytes]) -> YoloArchive | None:
    """A :class:`YoloArchive` from a zip's ``(member name, date_time)`` list (files, not folders)
    and a ``read(name) -> bytes`` (the caller's: it checks size and damage); None when the
    members are not a YOLO dataset (:func:`dataset_root`). Only :func:`needed_members` are read."""
    names = [n for n, _ in members]
    root = dataset_root(names)
    if root is None:
        return None
    times = dict(members)
    needed = needed_members(names, root)
    return YoloArchive(root=root, texts={n: read(n) for n in needed},
                       times={n: times[n] for n in needed if _is_label(n, root)}, images=image_members(names, root))


# --------------------------------------------------------------------------- class names, kpt_shape


def _text(data: bytes, what: str, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YoloFormatError(f"{where}: {what} is not UTF-8 text ({exc})") from None


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: a few hundred bytes of nested aliases ("billion
    laughs") expand to 10**9 nodes as soon as anything walks them; data.yaml never needs one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not read here",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _index(k: Any) -> int | None:
    """A class index as data.yaml writes it: an int, or a string of ASCII digits; None otherwise."""
    if isinstance(k, int) and not isinstance(k, bool):
        return k
    if isinstance(k, str) and k.strip().isascii() and k.strip().isdigit():
        return int(k)
    return None


def _names_of(value: Any, where: str) -> dict[int, str]:
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return dict(enumerate(value))
    if isinstance(value, dict):
        out: dict[int, str] = {}
        for k, v in value.items():
            idx = _index(k)
            if idx is None or idx < 0 or not isinstance(v, str):
                raise YoloFormatError(f"{where}: data.yaml 'names' entry {reprlib.repr(k)}: {reprlib.repr(v)} is "
                                      "not 'index: name'")
            out[idx] = v
        return out
    raise YoloFormatError(f"{where}: data.yaml 'names' must be a list of names or an index -> name mapping, "
                          f"got {reprlib.repr(value)}")


@dataclass
class _Dataset:
    names: dict[int, str]
    kpt_shape: tuple[int, int] | None = None
    kpt_names: dict[int, list[str]] = field(default_factory=dict)
    source: str = CLASSES_TXT


def _dataset(archive: YoloArchive, where: str) -> _Dataset:
    yaml_name, classes_name = archive.root + DATA_YAML, archive.root + CLASSES_TXT
    if yaml_name in archive.texts:
        try:
            doc = yaml.load(_text(archive.texts[yaml_name], DATA_YAML, where), Loader=_NoAliasLoader)  # noqa: S506
        except yaml.YAMLError as exc:
            raise YoloFormatError(f"{where}: {yaml_name} is not YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(doc, dict):
            raise YoloFormatError(f"{where}: {yaml_name} is not a YAML mapping")
        if doc.get("names") is None:
            raise YoloFormatError(f"{where}: {yaml_name} has no 'names' (the class names)")
        ds = _Dataset(_names_of(doc["names"], where), source=DATA_YAML)
        shape = doc.get("kpt_shape")
        if shape is not None:
            if (not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
                    or shape[0] < 1 or shape[1] not in (2, 3)):
                raise YoloFormatError(f"{where}: {yaml_name} kpt_shape must be [K, 2] or [K, 3], "
                                      f"got {reprlib.repr(shape)}")
            ds.kpt_shape = (shape[0], shape[1])
            kn = doc.get("kpt_names")
            if kn is not None:
                if not isinstance(kn, dict) or not all(
                        _index(k) is not None and isinstance(v, list) and len(v) == shape[0]
                        and all(isinstance(n, str) for n in v) for k, v in kn.items()):
                    raise YoloFormatError(f"{where}: {yaml_name} kpt_names must map a class index to {shape[0]} "
                                          f"keypoint names, got {reprlib.repr(kn)}")
                ds.kpt_names = {cast(int, _index(k)): list(v) for k, v in kn.items()}
        return ds
    if classes_name in archive.texts:
        lines = [ln.strip() for ln in _text(archive.texts[classes_name], CLASSES_TXT, where).splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        if not lines or not all(lines):
            raise YoloFormatError(f"{where}: {classes_name} must hold one class name a line (a blank line in "
                                  "between, or no name at all)")
        return _Dataset(dict(enumerate(lines)))
    raise YoloFormatError(f"{where}: a YOLO dataset needs {DATA_YAML} or {CLASSES_TXT} at {archive.root or 'the top'}")


# --------------------------------------------------------------------------- label lines


class _LineError(ValueError):
    pass


def _numbers(fields: Sequence[str], n: int, line: str) -> list[float]:
    try:
        vals = [float(v) for v in fields]
    except ValueError:
        raise _LineError(f"line {n}: not numbers: {line.strip()[:80]!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise _LineError(f"line {n}: non-finite value: {line.strip()[:80]!r}")
    return vals


def _unit(vals: Sequence[float], n: int, what: str) -> list[float]:
    """Normalized values checked inside [0, 1] (:data:`NORM_TOL`), then clipped to it."""
    bad = [v for v in vals if v < -NORM_TOL or v > 1 + NORM_TOL]
    if bad:
        raise _LineError(f"line {n}: {what} {bad[0]:g} outside [0, 1] (YOLO coordinates are normalized by the "
                         "image size)")
    return [min(max(v, 0.0), 1.0) for v in vals]


def _keypoints(vals: list[float], cat: str, cls: int, ds: _Dataset, schema: dict[str, list[str]],
               n: int) -> list[float] | None:
    assert ds.kpt_shape is not None
    k, ndim = ds.kpt_shape
    triples: list[tuple[float, float, float]] = []
    for i in range(k):
        x, y = vals[ndim * i], vals[ndim * i + 1]
        v = vals[ndim * i + 2] if ndim == 3 else (0.0 if x == 0 and y == 0 else 2.0)
        if v not in (0.0, 1.0, 2.0):
            raise _LineError(f"line {n}: keypoint {i} has visibility {v:g}, want 0, 1 or 2")
        if v > 0:
            x, y = _unit([x, y], n, f"keypoint {i} coordinate")
        triples.append((x, y, v) if v > 0 else (0.0, 0.0, 0.0))
    if all(t[2] == 0 for t in triples):
        return None  # a class without keypoints: the pose layout writes K "0 0 0"
    ours = schema.get(cat)
    if not ours:
        raise _LineError(f"line {n}: keypoints on category {cat!r}, which has none in the config")
    theirs = ds.kpt_names.get(cls)
    if theirs is None:
        if len(ours) != k:
            raise _LineError(f"line {n}: {k} keypoints, the config's {cat} has {len(ours)} (data.yaml names no "
                             "kpt_names, so the config's order is assumed)")
        theirs = ours
    unknown = [name for name in theirs if name not in ours]
    if unknown:
        raise _LineError(f"line {n}: keypoints {unknown} are not in the config's {cat} keypoints")
    pos = {name: i for i, name in enumerate(theirs)}
    flat: list[float] = []
    for name in ours:
        flat += list(triples[pos[name]]) if name in pos else [0.0, 0.0, 0.0]
    return flat


def _regions(text: str, ds: _Dataset, schema: dict[str, list[str]]) -> tuple[list[Region], bool]:
    """The objects of one label file and whether any is a polygon; raises :class:`_LineError`."""
    out: list[Region] = []
    polygon_seen = False
    pose_fields = 5 + ds.kpt_shape[0] * ds.kpt_shape[1] if ds.kpt_shape else None
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if pose_fields is not None and len(fields) != pose_fields:
            raise _LineError(f"line {n}: the pose layout (kpt_shape {list(ds.kpt_shape or ())}) needs {pose_fields} "
                             f"fields 'cls cx cy w h' + keypoints, got {len(fields)}")
        if pose_fields is None and len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise _LineError(f"line {n}: expected 'cls cx cy w h' (5 fields) or a polygon 'cls x1 y1 ... xn yn' "
                             f"(an odd count >= 7), got {len(fields)} fields")
        (cls_f, *vals) = _numbers(fields, n, line)
        if cls_f != int(cls_f) or int(cls_f) not in ds.names:
            known = f"0..{max(ds.names)}" if ds.names else "none"
            raise _LineError(f"line {n}: class index {fields[0]} is not one of the {len(ds.names)} classes of "
                             f"{ds.source} ({known})")
        cls = int(cls_f)
        cat = ds.names[cls]
        region: NormRegion = {"kind": "norm", "region_id": None, "category": cat, "box": None, "polygon": None,
                              "keypoints": None, "original_width": None, "original_height": None}
        if len(fields) == 5 or pose_fields is not None:
            box = _unit(vals[:4], n, "box value")
            if box[2] <= 0 or box[3] <= 0:
                raise _LineError(f"line {n}: box has zero or negative size (w {vals[2]:g}, h {vals[3]:g})")
            region["box"] = box
            if pose_fields is not None:
                region["keypoints"] = _keypoints(vals[4:], cat, cls, ds, schema, n)
        else:
            region["polygon"] = _unit(vals, n, "polygon coordinate")
            polygon_seen = True
        out.append(region)
    return out, polygon_seen


# --------------------------------------------------------------------------- records


def _iso(date_time: Sequence[int] | None, fallback: str) -> str:
    if not date_time:
        return fallback
    try:
        t = dt.datetime(*cast(tuple[int, int, int, int, int, int], tuple(date_time)[:6]), tzinfo=dt.timezone.utc)
    except (TypeError, ValueError):
        return fallback
    return fallback if t < _NO_DATE else t.isoformat()


def _image_index(archive: YoloArchive) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Images by their path under ``images/`` without extension, and by bare stem."""
    by_path: dict[str, list[str]] = {}
    by_stem: dict[str, list[str]] = {}
    base = archive.root + "images/"
    for name in archive.images:
        rel = name[len(base):].rsplit(".", 1)[0]
        by_path.setdefault(rel, []).append(name)
        by_stem.setdefault(rel.rsplit("/", 1)[-1], []).append(name)
    return by_path, by_stem


def parse(content: Any, *, where: str, fallback_time: str, keypoints: dict[str, list[str]] | None = None
          ) -> ParsedFile:
    """A YOLO dataset's records, one per label file in name order (see the module docstring).

    Args:
        content: a :class:`YoloArchive` (:func:`read_archive`).
        where: the zip's name, for messages.
        fallback_time: ISO 8601 version time of label members without a zip date.
        keypoints: ``{category: [keypoint names]}`` of the project (pose keypoints are reordered
            into it).

    Returns:
        ``{"tool": "yolo", "format": "yolo-detect" | "yolo-segment" | "yolo-pose", "records",
        "container": None}``; every record's ``format`` is the dataset's.

    Raises:
        YoloFormatError: not a :class:`YoloArchive`, no class names, ``data.yaml`` / ``classes.txt``
            unreadable (not UTF-8, not a YAML mapping, malformed ``names``, ``kpt_shape`` or
            ``kpt_names``).
    """
    if not isinstance(content, YoloArchive):
        raise YoloFormatError(f"{where}: not a YOLO dataset zip")
    ds = _dataset(content, where)
    by_path, by_stem = _image_index(content)
    schema = keypoints or {}
    records: list[ReviewRecord] = []
    any_polygon = False
    labels_dir = content.root + "labels/"
    for name in sorted(n for n in content.texts if _is_label(n, content.root)):
        task = name[len(content.root):]  # labels/train/a.txt
        sub = name[len(labels_dir):].rsplit(".", 1)[0]  # train/a
        stem = sub.rsplit("/", 1)[-1]
        images = by_path.get(sub) or by_stem.get(stem) or []
        rec = new_record(TOOL, task, "yolo-detect", allow_name=True, tool_annotation_id=TOOL_ANNOTATION_ID,
                         updated_at=_iso(content.times.get(name), fallback_time), annotator=ANNOTATOR,
                         item=f"label file {task}")
        if len(images) > 1:
            rec["error"] = f"{task}: several images in the zip have its stem: {', '.join(images)}"
        elif images:
            rec["image_ref"] = images[0][len(content.root):]
        else:
            rec["image_ref"], rec["match_stem"] = stem, True
        try:
            text = content.texts[name].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            rec["error"] = rec["error"] or f"{task}: not UTF-8 text ({exc})"
            text = ""
        if not rec["error"]:
            try:
                rec["regions"], polygon = _regions(text, ds, schema)
                any_polygon = any_polygon or polygon
            except _LineError as exc:
                rec["error"] = f"{task} {exc}"
        records.append(rec)
    fmt = "yolo-pose" if ds.kpt_shape else "yolo-segment" if any_polygon else "yolo-detect"
    for rec in records:
        rec["format"] = fmt
    return {"tool": TOOL, "format": fmt, "records": records, "container": None}


def norm_to_px(region: NormRegion, width: int, height: int) -> dict:
    """A :class:`labelloop.formats.records.NormRegion` as a pixel region (:class:`labelloop.formats.records.PixelRegion`
    keys) of a ``width x height`` image: ``bbox`` xyxy pixels (``(cx -+ w / 2) * width``...,
    clipped to the image) or None, ``polygons`` ``[[x1 * width, y1 * height, ...]]`` or None,
    ``keypoints`` flat ``x * width, y * height, v`` or None."""
    bbox = None
    if region.get("box"):
        cx, cy, w, h = (float(v) for v in region["box"] or ())
        bbox = [min(max(v, 0.0), float(size)) for v, size in
                (((cx - w / 2) * width, width), ((cy - h / 2) * height, height),
                 ((cx + w / 2) * width, width), ((cy + h / 2) * height, height))]
    poly = region.get("polygon")
    kps = region.get("keypoints")
    return {"kind": "px", "region_id": region.get("region_id"), "category": region.get("category"), "bbox": bbox,
            "polygons": [[float(v) * (width if i % 2 == 0 else height) for i, v in enumerate(poly)]] if poly else None,
            "mask": None, "cvat_mask": None,
            "keypoints": [float(v) * (width if i % 3 == 0 else height if i % 3 == 1 else 1)
                          for i, v in enumerate(kps)] if kps else None,
            "attributes": {}, "occluded": False, "iscrowd": False, "original_width": None, "original_height": None}
