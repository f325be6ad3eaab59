"""The one record type every review-file reader returns, and the rules the readers share.

Every reader (:mod:`labelloop.formats.labelstudio.reader`, :mod:`labelloop.formats.cvat.reader`,
:mod:`labelloop.formats.coco.reader`, :mod:`labelloop.formats.yolo.reader`) has the same two verbs:

- ``looks_like(content) -> bool``: whether ``content`` (the parsed JSON, the raw bytes of an XML
  file, or for YOLO a zip's member names / :class:`~labelloop.formats.yolo.reader.YoloArchive`) is
  that tool's format;
- ``parse(content, *, where, fallback_time, keypoints=None) -> ParsedFile``: the file's records,
  one :class:`ReviewRecord` per reviewed annotation of one image (Label Studio: an annotation of a
  task; CVAT: an ``<image>``; COCO: an ``images`` entry with its annotations; YOLO: a label
  file), plus the tool's
  own name for the container the file came from (``project-7``, ``task-12``) when it has one.

A problem confined to one record (an unknown category, a bad box, an unknown image id...) never
raises: the record carries it in ``error`` and the importer rejects that record alone. Whatever
makes the whole file unreadable raises the format's error (a ``ValueError``).

Review import (:mod:`labelloop.review.importer`) and gold registration (:mod:`labelloop.review.gold`)
both read files through :func:`labelloop.review.files.read_review_file`, so a file that imports as
a review registers as a gold set and the other way round.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NotRequired, TypedDict


class LsRegion(TypedDict, total=False):
    """A Label Studio result item: geometry in percent of the displayed image.

    ``kind``: ``rectangle`` | ``polygon`` | ``brush`` | ``keypoint`` | ``visibility``; ``value``: the
    result's ``value`` (``x, y, width, height, rotation`` percent, ``points``, ``rle``...);
    ``category``: the label (a keypoint's name; None for visibility choices); ``type``: Label
    Studio's result type (``rectanglelabels``...)."""

    region_id: str | None
    kind: str
    category: str | None
    value: dict[str, Any]
    original_width: float | None
    original_height: float | None
    type: str
    mapped_from: str  # another labeling config's control name, mapped to ours by region type
    object_name: str  # that config's image object (to_name), when mapped


class CvatMask(TypedDict):
    """A CVAT ``<mask>`` as the file states it, not decoded yet: ``rle`` (the attribute's text:
    comma-separated row-major runs over the crop, background first), the crop's ``left``, ``top``,
    ``width`` and ``height`` in pixels of the declared image. The reader checks the runs add up to
    the crop and the crop lies in the declared image; the mask is decoded only once the image is
    matched and its size agrees (:func:`labelloop.formats.cvat.reader.cvat_mask_rle`)."""

    rle: str
    left: int
    top: int
    width: int
    height: int


class PixelRegion(TypedDict, total=False):
    """A region in pixels of the file's image (CVAT, COCO).

    ``bbox`` xyxy pixels or None; ``polygons`` flat COCO polygons or None; ``mask`` COCO RLE JSON or
    None; ``cvat_mask``: a CVAT mask still to decode (:class:`CvatMask`) or None; ``keypoints``
    flat COCO ``x, y, v`` triples in the project's keypoint order or None; ``iscrowd``: a crowd
    region (COCO ``iscrowd: 1``, CVAT's ``is_crowd``)."""

    kind: Literal["px"]
    region_id: str | None
    category: str | None
    bbox: list[float] | None
    polygons: list[list[float]] | None
    mask: str | None
    cvat_mask: CvatMask | None
    keypoints: list[float] | None
    attributes: dict[str, Any]
    occluded: bool
    iscrowd: bool
    original_width: float | None
    original_height: float | None


class NormRegion(TypedDict, total=False):
    """A YOLO object in coordinates normalized by the image size (:mod:`labelloop.formats.yolo.reader`):
    x values divided by the image width, y values by its height, in [0, 1]. They become pixels
    only once the image is matched (:func:`labelloop.review.regions.to_pixels`, with our image's
    EXIF-corrected size).

    ``box``: ``[cx, cy, w, h]`` (centre and size) or None; ``polygon``: flat ``[x1, y1, ..., xn,
    yn]`` (one polygon, n >= 3) or None; ``keypoints``: flat ``x, y, v`` triples in the project's
    keypoint order (v 0 / 1 / 2 as in COCO; ``0, 0, 0`` for a point not labeled) or None;
    ``original_width`` / ``original_height``: None (a YOLO label states no image size)."""

    kind: Literal["norm"]
    region_id: str | None
    category: str | None
    box: list[float] | None
    polygon: list[float] | None
    keypoints: list[float] | None
    original_width: float | None
    original_height: float | None


class TagRegion(TypedDict):
    """The image-level labels of one annotation (progressive labeling, ``level: tag`` categories):
    CVAT's ``<tag label=...>`` elements of an ``<image>``. ``value["choices"]``: the category
    names, in file order; ``category``: None (several tags make one region). Label Studio's
    ``tags`` Choices results come as an :class:`LsRegion` of kind ``tag`` of the same shape."""

    kind: Literal["tag"]
    region_id: str | None
    category: None
    value: dict[str, Any]


Region = LsRegion | PixelRegion | NormRegion | TagRegion


class ParentRegion(TypedDict):
    """A region of the prediction a Label Studio annotation started from (JSON exports only)."""

    region_id: str | None
    category: str | None
    value: dict[str, Any]
    original_width: float | None
    original_height: float | None
    score: float | None


class ReviewRecord(TypedDict):
    """One reviewed annotation of one image, as a review file states it.

    Identity: ``(source, task_id, tool_annotation_id, updated_at)`` (the source comes from the
    import, :func:`default_source`). ``image_ref``: the tool's reference to the image (a path or
    URL); ``data_image_id``: our image_id when the file carries it (Label Studio tasks we sent,
    COCO ``sha256``); ``allow_name``: whether a bare file name may match an image; ``match_stem``
    (optional, false when absent): ``image_ref`` is a bare file stem that may match the one image
    whose file name has that stem (a YOLO label file whose zip holds no image); ``format``: the
    file's flavour (``json``, ``json-min``, ``cvat-1.1``, ``coco``, ``yolo-detect``,
    ``yolo-segment``, ``yolo-pose``); ``tool``: ``label-studio``, ``cvat``, ``coco`` or ``yolo``;
    ``item``: how REJECTS rows name the record; ``error``: why the record cannot be imported, or
    None; ``data_guidelines_sha256`` (optional): the guidelines version the task was exported
    under, when the file carries it (the ``guidelines_sha256`` data field of Label Studio tasks
    labelloop sent: 64 hex digits or ``"none"``; any other value is left out)."""

    task_id: str
    tool_annotation_id: str | None
    updated_at: str | None
    created_at: str | None
    annotator: str
    was_cancelled: bool
    image_ref: str | None
    data_image_id: str | None
    project: str | None
    format: str
    tool: str
    allow_name: bool
    match_stem: NotRequired[bool]
    regions: list[Region]
    parent_regions: list[ParentRegion]
    parent_prediction_id: str | None
    item: str
    error: str | None
    data_guidelines_sha256: NotRequired[str]


class ParsedFile(TypedDict):
    """What a reader's ``parse`` returns: the records and the container the file names."""

    tool: str
    format: str
    records: list[ReviewRecord]
    container: str | None


class ReviewFile(TypedDict):
    """A review file read whole (:func:`labelloop.review.files.read_review_file`); ``format`` is the
    tool whose format it is (``label-studio``, ``cvat``, ``coco``, ``yolo``)."""

    format: str
    records: list[ReviewRecord]
    default_source: str


def new_record(tool: str, task_id: str, fmt: str, *, allow_name: bool, **fields: Any) -> ReviewRecord:
    """A :class:`ReviewRecord` with every field at its default (no regions, no error), then
    ``fields``; ``item`` defaults to ``"task <task_id>"``."""
    rec: ReviewRecord = {"task_id": task_id, "tool_annotation_id": None, "updated_at": None, "created_at": None,
                         "annotator": annotator_pseudonym(tool, None), "was_cancelled": False, "image_ref": None,
                         "data_image_id": None, "project": None, "format": fmt, "tool": tool,
                         "allow_name": allow_name, "regions": [], "parent_regions": [], "parent_prediction_id": None,
                         "item": f"task {task_id}", "error": None}
    rec.update(fields)  # type: ignore[typeddict-item]
    return rec


PREFIX = {"label-studio": "ls", "cvat": "cvat", "coco": "coco", "yolo": "yolo"}


def annotator_pseudonym(tool: str, value: Any) -> str:
    """The pseudonymous annotator id of a tool's user: ``<prefix>-user-<n>`` for an integer user
    id (or a string of digits), ``<prefix>-user-`` + 12 hex of sha256 of the name or email
    otherwise (a dict's ``email`` else ``id``), ``<prefix>-user-unknown`` when absent. The prefix
    is the tool's (``ls``, ``cvat``, ``coco``, ``yolo``). Names and emails never reach our tables."""
    prefix = PREFIX.get(tool, tool)
    if isinstance(value, dict):
        value = value.get("email") or value.get("id")
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.strip().isdigit():
        return f"{prefix}-user-{int(value)}"
    if not isinstance(value, str) or not value.strip():
        return f"{prefix}-user-unknown"
    return f"{prefix}-user-" + hashlib.sha256(value.strip().encode("utf-8")).hexdigest()[:12]


def default_source(tool: str, path: str | Path, container: str | None = None, inbox: Path | None = None) -> str:
    """The review source of a file imported without ``--source``, one rule for every tool:
    ``<tool>/<container>`` when the file names the project or task it came from (Label Studio's
    ``project-7``, CVAT's ``task-12``); else ``<tool>/<subfolder>`` when ``path`` lies in a
    subfolder of the review ``inbox``; else ``<tool>/<file stem>`` (a COCO file's ``coco/<stem>``,
    a YOLO dataset zip's ``yolo/<zip stem>``)."""
    if container:
        return f"{tool}/{container}"
    path = Path(path)
    if inbox is not None:
        try:
            rel = path.resolve().parent.relative_to(Path(inbox).resolve())
        except ValueError:
            rel = None
        if rel is not None and rel.parts:
            return f"{tool}/{PurePosixPath(*rel.parts)}"
    return f"{tool}/{path.stem}"


def record_item(rec: ReviewRecord | dict) -> str:
    """How REJECTS rows and messages name a record (its ``item``: ``task 12 annotation 7``,
    ``image a.jpg (frame 3)``...)."""
    item = rec.get("item")
    if item:
        return str(item)
    ann = rec.get("tool_annotation_id")
    return f"task {rec.get('task_id')}" + (f" annotation {ann}" if ann is not None else "")
