"""Where each file of a release lives, and how other tools find them.

The layout is the one COCO's own downloads, datumaro, supervision, FiftyOne and Ultralytics
read without options (paths relative to ``release/``)::

    images/<split>/<image_id[:16]>.<ext>     the EXIF-applied image files
    annotations/instances_<split>.json       COCO: every object; ``file_name`` relative to images/<split>/
    annotations/person_keypoints_<split>.json COCO keypoints: the keypoint categories, every object complete
    annotations/segm-<split>.json            COCO, the segmentation view: objects of mask categories only
    labels/<split>/<image_id[:16]>.txt       YOLO labels (Ultralytics derives them from images/ -> labels/)
    data.yaml                                Ultralytics dataset file
    <split>.txt                              only when some image must stay out of the YOLO view

``file_name`` follows COCO 2017 (``instances_val2017.json`` names ``000000397133.jpg``, found in
``val2017/``): datumaro's COCO importer looks for ``images/<subset>/<file_name>`` beside
``annotations/``, supervision's ``DetectionDataset.from_coco(images_directory_path=...)`` and
FiftyOne's ``COCODetectionDataset(data_path=...)`` join the folder given and ``file_name``.

The segmentation view is named ``segm-<split>.json`` and not ``<task>_<split>.json`` because
datumaro reads every ``*_*.json`` below the dataset root whose prefix names a COCO task (and a
second ``instances_train.json`` would replace the first); the name keeps it out of that search.

Releases written before this layout keep ``coco/instances_<split>.json`` with
``file_name`` relative to the release root; :func:`coco_instances` finds either.
"""

from __future__ import annotations

from labelloop.formats.labelstudio.tasks import NO_OBJECTS_CHOICE
from labelloop.workspace.config import TAG_SEPARATOR

SPLITS = ("train", "val", "test")
ANNOTATIONS = "annotations"


def instances_file(split: str) -> str:
    """``annotations/instances_<split>.json``: the COCO file of every object of ``split``."""
    return f"{ANNOTATIONS}/instances_{split}.json"


def keypoints_file(split: str) -> str:
    """``annotations/person_keypoints_<split>.json``: COCO's keypoint file (pose releases only)."""
    return f"{ANNOTATIONS}/person_keypoints_{split}.json"


def segmentation_file(split: str) -> str:
    """``annotations/segm-<split>.json``: the objects of mask categories, for ``COCOeval(..., "segm")``."""
    return f"{ANNOTATIONS}/segm-{split}.json"


def legacy_instances_file(split: str) -> str:
    """``coco/instances_<split>.json``: where releases before this layout kept their COCO files."""
    return f"coco/instances_{split}.json"


def image_file(split: str, file_name: str) -> str:
    """The release-relative path of a COCO image entry's ``file_name`` (``images/<split>/<file_name>``);
    a legacy ``file_name`` that already starts with ``images/`` is returned as it is."""
    return file_name if file_name.startswith("images/") else f"images/{split}/{file_name}"


def yolo_list_file(split: str) -> str:
    """``<split>.txt``: the image list of ``split`` that data.yaml names when an image of the split
    must stay out of the YOLO view (its only objects are crowd regions, which YOLO cannot hold)."""
    return f"{split}.txt"


def coco_instances(read, split: str) -> tuple[str, bytes] | None:
    """``(relpath, bytes)`` of ``split``'s COCO instances file, new layout first, else the legacy
    one; ``read(relpath) -> bytes | None`` reads inside the release. None when neither exists."""
    for rel in (instances_file(split), legacy_instances_file(split)):
        data = read(rel)
        if data is not None:
            return rel, data
    return None


#: The ``tags`` control's reserved answer (Label Studio's ``no objects`` choice): the reviewer
#: checked the image for boxes and there are none.
NO_OBJECTS = NO_OBJECTS_CHOICE


def boxes_unchecked(resolution: str | None, n_labels: int | None, image_labels: str | None) -> bool:
    """True for a released image that is out of the box / mask annotations (COCO instances and its
    views, the YOLO view) though it is in ``images/``, ``images.parquet`` and ``image_labels.csv``:
    reviewed (``resolution == "reviewed"``), with no label, with at least one tag answer
    (``image_labels``: the ``;``-joined tags of images.parquet, non-empty) and without the
    reserved ``no objects`` answer. The reviewer labeled the image's tags but never said it holds
    no box: it is not a negative for the box categories (docs/guides/releases.md)."""
    tags = [t for t in (image_labels or "").split(TAG_SEPARATOR) if t]
    return resolution == "reviewed" and not n_labels and bool(tags) and NO_OBJECTS not in tags
