"""A release split as training examples: the COCO instances file and the image files of one split
of a release directory (:mod:`labelloop.release.layout`).

One :class:`Example` per COCO image entry: its file, size, COCO ``bbox`` rows (``[x, y, w, h]``
pixels, top-left origin) and class indices (the position of the category in the release's
``categories``, sorted by COCO ``id``). Crowd regions (``iscrowd: 1``) are left out of the
targets, as COCO's own training recipes do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.release.layout import coco_instances, image_file


class ReleaseDataError(ValueError):
    """A release split cannot be trained on or evaluated: its COCO file is missing or malformed, or
    an image file it names is missing."""


@dataclass(frozen=True)
class Example:
    """One image of a split: ``path`` (absolute), ``width``/``height`` pixels, COCO ``image_id``
    (int), ``bboxes`` COCO xywh pixels and ``labels`` class indices (same length)."""

    coco_id: int
    file: Path
    width: int
    height: int
    bboxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SplitData:
    """A split of a release: ``categories`` (names, class index order), ``examples``, the COCO
    dictionary as read (``coco``, for pycocotools) and the file it came from (``source``)."""

    categories: list[str]
    examples: list[Example]
    coco: dict
    source: Path


def read_split(release_dir: str | Path, split: str) -> SplitData:
    """Read ``split`` (``train``/``val``/``test``) of the release in ``release_dir``.

    Raises:
        ReleaseDataError: no instances file for the split, a file that is not COCO JSON (naming the
            file and the key), an annotation naming an unknown category or image, or a missing image file.
    """
    root = Path(release_dir)

    def read(rel: str) -> bytes | None:
        p = root / rel
        return p.read_bytes() if p.is_file() else None

    found = coco_instances(read, split)
    if found is None:
        raise ReleaseDataError(f"release {root}: no COCO instances file for split {split!r}")
    rel, data = found
    source = root / rel
    try:
        coco = json.loads(data)
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        images = coco["images"]
        anns = coco["annotations"]
    except (ValueError, KeyError, TypeError) as e:
        raise ReleaseDataError(f"{source}: not a COCO instances file ({type(e).__name__}: {e})") from e
    index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in images}
    for a in anns:
        if a.get("category_id") not in index:
            raise ReleaseDataError(f"{source}: annotation {a.get('id')} names unknown category_id {a.get('category_id')}")
        if a.get("image_id") not in by_image:
            raise ReleaseDataError(f"{source}: annotation {a.get('id')} names unknown image_id {a.get('image_id')}")
        if not a.get("iscrowd"):
            by_image[a["image_id"]].append(a)
    examples = []
    for im in sorted(images, key=lambda r: r["id"]):
        path = root / image_file(split, im["file_name"])
        if not path.is_file():
            raise ReleaseDataError(f"{source}: image {im['id']} file {path} is missing")
        rows = by_image[im["id"]]
        examples.append(Example(coco_id=im["id"], file=path, width=int(im["width"]), height=int(im["height"]),
                                bboxes=[[float(v) for v in a["bbox"]] for a in rows],
                                labels=[index[a["category_id"]] for a in rows]))
    return SplitData(categories=[c["name"] for c in cats], examples=examples, coco=coco, source=source)
