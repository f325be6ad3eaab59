"""Build the files of a dataset release (COCO JSON + YOLO TXT + provenance), deterministically.

Layout of ``release/`` (paths relative to it)::

    images/<split>/<image_id[:16]>.<ext>   EXIF-applied copies (what the boxes refer to)
    annotations/instances_<split>.json     COCO JSON (boxes, polygons / RLE, crowd); file_name
                                           relative to images/<split>/
    annotations/person_keypoints_<split>.json  the keypoint categories' objects (pose releases)
    annotations/segm-<split>.json          the mask categories' objects (COCOeval "segm")
    labels/<split>/<image_id[:16]>.txt     YOLO labels in the configured layout (empty = negative)
    data.yaml                              Ultralytics dataset file (no `path`: resolved here)
    <split>.txt                            YOLO image list, only when a crowd-only image must stay
                                           out of the YOLO view
    shards/<split>/<split>-<sha>.tar       instead of images/ when ``release.shard_mb`` is set:
    shards/<split>/index.parquet           the same files as tar members (labelloop.release.shards)
    image_labels.csv                       image-level tags (``level: tag`` categories), when the
                                           project has any: image_id, file_name, split, labels; an
                                           image reviewed for tags only, without the "no objects"
                                           answer, is in images/ but out of the COCO and YOLO
                                           files (labelloop.release.layout.boxes_unchecked)
    labels.parquet                         every label with its provenance (LABELS schema)
    images.parquet                         every image: split, group, COCO id, how it was resolved
    lineage.parquet                        one provenance row per label (RELEASE_LINEAGE)
    manifest.json                          sha256 of every file above, counts, split balance

:mod:`labelloop.release.layout` says where each file lives and why (the readers it suits).
Splits come from :mod:`labelloop.release.splits` (stored once per near-duplicate group), COCO ids from
:mod:`labelloop.release.ids` (stable across releases). Files hold no timestamps and no run ids, and
use sorted keys, so the same labels and registries give the same bytes; ``content_sha256``
(sha256 of the manifest's file table) identifies a release's content. Every file is re-read
and checked before the release is accepted (:mod:`labelloop.release.check`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from labelloop import tables
from labelloop.formats import coco, yolo
from labelloop.images.files import save_release_copy
from labelloop.release import layout, shards
from labelloop.release.ids import CocoIds
from labelloop.release.lineage import release_lineage_rows
from labelloop.release.splits import SPLITS, assign_splits, balance_report, empty_splits, group_of, load_assignments
from labelloop.tables.schemas import (
    LABELS,
    RELEASE_IMAGES,
    RELEASE_LINEAGE,
    HumanLabelRow,
    ImageRow,
    LabelRow,
    ResolvedImageRow,
    ReviewQueueRow,
    ReviewRow,
    SplitAssignmentRow,
)
from labelloop.workspace.config import TAG_SEPARATOR

#: Ultralytics' ``verify_image_label`` asserts both sides are > 9 px: smaller images are dropped there.
TINY_SIDE = 10

__all__ = ["IMAGE_LABELS_FILE", "SPLITS", "TINY_SIDE", "ReleaseInputs", "ReleasePlan", "build_release", "dataset_warnings", "image_labels_csv", "plan_release", "swap_in"]


@dataclass
class ReleaseInputs:
    """Everything a release is made of (rows as the workspace tables hold them).

    ``images``: IMAGES rows (``uri`` relative to the workspace root); ``resolved``:
    RESOLVED_IMAGES; ``labels``: LABELS; ``reviews``: REVIEWS rows by review_id;
    ``human_labels``: HUMAN_LABELS rows by (annotation_id, review_id); ``predictions``:
    ``prediction_id -> {"prompt", "run_id", ...}``; ``queue``: REVIEW_QUEUE rows by image_id;
    ``thresholds``: ``category -> (low, high)`` of the routing policy ``policy_id``;
    ``keypoints``: ``category -> {"keypoints": names, "skeleton": pairs}``; ``mask_categories``:
    the categories whose annotation level is masks (``categories[].masks``), which make up the
    segmentation view (:func:`labelloop.formats.coco.writer.segmentation_view`).
    """

    images: list[ImageRow]
    resolved: list[ResolvedImageRow]
    labels: list[LabelRow]
    categories: list[str]
    ratios: dict[str, float]
    yolo_task: str = "detect"
    keypoints: dict[str, dict] = field(default_factory=dict)
    reviews: dict[str, ReviewRow] = field(default_factory=dict)
    human_labels: dict[tuple, HumanLabelRow] = field(default_factory=dict)
    predictions: dict[str, dict] = field(default_factory=dict)
    queue: dict[str, ReviewQueueRow] = field(default_factory=dict)
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)
    policy_id: str | None = None
    shard_mb: float | None = None  # images in tar shards of about this many MiB (labelloop.release.shards)
    mask_categories: list[str] = field(default_factory=list)  # categories labeled with masks (segm view)
    guidelines_sha256: str | None = None  # of the workspace's guidelines.md ("none": no file), in the manifest
    tag_categories: list[str] = field(default_factory=list)  # level: tag categories (image_labels.csv)
    tags: dict[str, list[str]] = field(default_factory=dict)  # image_id -> its tags, human over model ([] = none)


@dataclass
class ReleasePlan:
    """Splits and ids of one release: ``split_of`` (group -> split), ``split_rows`` (the updated
    assignment registry), ``balance`` (:func:`labelloop.release.splits.balance_report`) and ``ids``."""

    images: list[ImageRow]  # the IMAGES row of each released image, by image_id order
    split_of: dict[str, str]
    split_rows: dict[str, SplitAssignmentRow]
    balance: dict
    ids: CocoIds


def _released_images(inputs: ReleaseInputs) -> list[ImageRow]:
    by_id: dict[str | None, ImageRow] = {}
    for img in sorted(inputs.images, key=lambda r: r["ingest_seq"]):
        if img["status"] == "ok":
            by_id.setdefault(img["image_id"], img)
    missing = sorted({r["image_id"] for r in inputs.resolved} - set(by_id))
    if missing:
        raise ValueError(f"resolved images missing from the image table: {', '.join(m[:12] for m in missing)}")
    return [by_id[r["image_id"]] for r in sorted(inputs.resolved, key=lambda r: r["image_id"])]


def plan_release(inputs: ReleaseInputs, splits_path: Path, ids_path: Path, resplit: bool = False) -> ReleasePlan:
    """Assign splits (stored ones kept unless ``resplit``) and COCO ids for ``inputs``.

    Nothing is written: :meth:`ReleasePlan.ids` ``.save()`` and
    :func:`labelloop.release.splits.save_assignments` persist the registries once the release is made.
    """
    released = _released_images(inputs)
    by_image = {img["image_id"]: img for img in released}
    groups: dict[str, dict] = {}
    for img in released:
        g = groups.setdefault(group_of(img), {"images": 0, "classes": Counter()})
        g["images"] += 1
    for lab in inputs.labels:
        found = by_image.get(lab["image_id"])
        if found is not None:
            groups[group_of(found)]["classes"][lab["category"]] += 1
    split_of, rows = assign_splits(groups, load_assignments(splits_path), inputs.ratios, resplit=resplit)
    balance = balance_report(groups, split_of, inputs.ratios, inputs.categories)
    return ReleasePlan(released, split_of, rows, balance, CocoIds(ids_path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _kpt_count(inputs: ReleaseInputs) -> int:
    counts = {len(v.get("keypoints") or []) for v in inputs.keypoints.values() if v.get("keypoints")}
    if inputs.yolo_task != "pose":
        return 0
    if len(counts) != 1:
        raise ValueError("release.yolo_task pose needs every category with keypoints to have the same number of them "
                         f"(and at least one such category); got {sorted(counts) or 'none'}")
    return counts.pop()


def _image_row(img: ImageRow, split: str, file_name: str, res: ResolvedImageRow, inputs: ReleaseInputs,
               labels: list[LabelRow], coco_id: int) -> dict:
    assert img["image_id"] is not None  # a released image is an ok row: it has its sha256
    review: ReviewRow | dict = inputs.reviews.get(res.get("review_id") or "", {})
    q: ReviewQueueRow | dict = inputs.queue.get(img["image_id"], {})
    return {
        "image_id": img["image_id"], "coco_image_id": coco_id, "file_name": file_name, "split": split,
        "group_id": group_of(img), "width": img["width"], "height": img["height"], "uri": img["uri"],
        "source_path": img["source_path"], "origin_path": img.get("origin_path"), "batch": img.get("batch"),
        "exif_orientation": img.get("exif_orientation"), "resolution": res["resolution"], "n_labels": len(labels),
        "model_id": next((lab["model_id"] for lab in labels if lab.get("model_id")), None)
        if res["resolution"] != "reviewed" else None,
        "review_id": res.get("review_id"), "review_source": review.get("source"), "review_task_id": review.get("task_id"),
        "annotator": review.get("annotator"), "reviewed_at": review.get("updated_at"),
        "route": q.get("route") or res.get("route"), "route_reason": q.get("reason"),
        "qa_sample": (q.get("route") or res.get("route")) == "qa_sample", "policy_id": q.get("policy_id"),
        "image_labels": TAG_SEPARATOR.join(sorted(inputs.tags[img["image_id"]])) if img["image_id"] in inputs.tags else None,
    }


#: The release's image-level labels file (progressive labeling, ``level: tag`` categories).
IMAGE_LABELS_FILE = "image_labels.csv"


def image_labels_csv(image_rows: list[dict], tags: dict[str, list[str]]) -> str:
    """``image_labels.csv``: header ``image_id,file_name,split,labels``, then one row per released
    image that has a tag answer (a reviewed image of a project with ``level: tag`` categories),
    sorted by image_id; ``file_name`` is release-relative (``images/<split>/<file>``), ``labels``
    the tag categories joined by ``;`` in sorted order (empty: the reviewer gave none, so none of
    them applies). Tags are human over model (:func:`labelloop.review.resolve.resolve_tags`): an
    auto-accepted image carries its model's kept tag pre-labels; an image not listed has no tag
    answer (auto-accepted with the opencv backend, which gives no tag pre-label).
    RFC 4180 CSV (Python's csv module), LF line ends, UTF-8."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "file_name", "split", "labels"])
    for r in sorted(image_rows, key=lambda r: r["image_id"]):
        if r["image_id"] in tags:
            w.writerow([r["image_id"], r["file_name"], r["split"], TAG_SEPARATOR.join(sorted(tags[r["image_id"]]))])
    return buf.getvalue()


def _previous_hashes(previous: Path | None) -> dict[str, str]:
    """``file -> sha256`` from the manifest of the release in ``previous`` ({} when unreadable)."""
    if previous is None:
        return {}
    try:
        return dict(json.loads((previous / "manifest.json").read_text(encoding="utf-8"))["files"])
    except (TypeError, OSError, ValueError, KeyError):
        return {}


def _reuse_copy(previous: Path | None, hashes: dict[str, str], split: str, stem: str, dest_dir: Path) -> str | None:
    """Hard-link (else copy) ``images/<split>/<stem>.jpg|.png`` of the ``previous`` release into
    ``dest_dir``; returns the file name, or None when that release has no such file or its bytes
    differ from its manifest (``hashes``: file -> sha256). The stem is
    the image_id (sha256 of the source bytes) prefix and the copy is a deterministic function of
    the source, so the file is what :func:`save_release_copy` would write; linking skips its
    decode and write, and keeps the inode and mtime, so DVC does not hash it again."""
    if previous is None:
        return None
    found = [p for p in (previous / "images" / split / f"{stem}.jpg", previous / "images" / split / f"{stem}.png")
             if p.is_file() and not p.is_symlink()]
    if not found:
        return _from_shards(previous, split, stem, dest_dir)
    if len(found) != 1 or hashes.get(f"images/{split}/{found[0].name}") != _sha256(found[0]):
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.link(found[0], dest_dir / found[0].name)
    except OSError:
        shutil.copyfile(found[0], dest_dir / found[0].name)
    return found[0].name


def _from_shards(previous: Path, split: str, stem: str, dest_dir: Path) -> str | None:
    """Write ``images/<split>/<stem>.*`` from the previous release's shards (sha256-checked by
    :func:`labelloop.release.shards.read_member`) into ``dest_dir``; None when it has no such member."""
    folder = previous / "shards" / split
    if not (folder / shards.INDEX).is_file():
        return None
    try:
        rows = [r for r in shards.read_index(folder) if r["name"] in
                (f"images/{split}/{stem}.jpg", f"images/{split}/{stem}.png")]
        if len(rows) != 1:
            return None
        data = shards.read_member(folder, rows[0])
    except (OSError, ValueError):
        return None
    name = rows[0]["name"].rsplit("/", 1)[1]
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / name).write_bytes(data)
    return name


def _pack_shards(out_dir: Path, splits: list[str], mb: float, previous: Path | None) -> None:
    """Move ``out_dir/images/<split>/*`` into tar shards ``out_dir/shards/<split>/`` (member
    names ``images/<split>/<file>``, as images.parquet's file_name), reusing the previous release's
    unchanged shards."""
    for split in splits:
        src = out_dir / "images" / split
        members = {f"images/{split}/{p.name}": p for p in sorted(src.iterdir()) if p.is_file()}
        prev = previous / "shards" / split if previous is not None else None
        shards.write_shards(members, out_dir / "shards" / split, prefix=split, target_bytes=int(mb * 2**20),
                            previous=prev if prev is not None and prev.is_dir() else None)
    shutil.rmtree(out_dir / "images", ignore_errors=True)


def build_release(out_dir: Path, root: Path, inputs: ReleaseInputs, plan: ReleasePlan, locate=None,
                  previous: Path | None = None) -> dict:
    """Write a release into the empty folder ``out_dir`` (see the module docstring).

    Images are read from ``locate(uri)`` (:meth:`labelloop.workspace.layout.Workspace.locate`: the
    store, local or S3), else ``root / uri``; the release itself is always local files (DVC 3
    outputs), pushed to the DVC remote afterwards.

    ``previous``: the current release folder; its image files that this release keeps (same
    image, same split) are hard-linked instead of decoded and written again, so the cost of a
    release grows with the images added, not with the images held (the manifest still hashes
    every file).

    Returns the manifest dict (``files``, ``counts``, ``split_balance``, ``yolo_task``,
    ``guidelines_sha256`` (``inputs.guidelines_sha256``; not part of the content hash),
    ``content_sha256``). Registers new COCO ids in ``plan.ids`` (not saved here).

    Raises:
        ValueError: a label with an unknown category, an invalid box, mask or keypoints (from
            :func:`labelloop.formats.coco.writer.build_coco` / :func:`labelloop.formats.yolo.writer.label_text`), or a pose
            layout without a common keypoint count.
        labelloop.images.files.ImageError: a stored image can no longer be decoded.
    """
    out_dir = Path(out_dir)
    kpt = _kpt_count(inputs)
    resolved = {r["image_id"]: r for r in inputs.resolved}
    labels_by_image: dict[str, list[LabelRow]] = {}
    for lab in inputs.labels:
        labels_by_image.setdefault(lab["image_id"], []).append(lab)
    image_ids = plan.ids.image_ids(cast(list[str], [img["image_id"] for img in plan.images]))  # ok rows
    released_labels = [lab for lab in inputs.labels if lab["image_id"] in image_ids]
    ann_ids = plan.ids.annotation_ids(released_labels, image_ids)
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    image_rows = []
    hashes = _previous_hashes(previous)
    for img in plan.images:
        assert img["image_id"] is not None  # a released image is an ok row: it has its sha256
        split = plan.split_of[group_of(img)]
        dest = out_dir / "images" / split
        fname = (_reuse_copy(previous, hashes, split, img["image_id"][:16], dest)
                 or save_release_copy(locate(img["uri"]) if locate else root / img["uri"], dest, img["image_id"][:16],
                                      image_id=img["image_id"]))
        file_name = layout.image_file(split, fname)  # release-relative (images.parquet, shards)
        per_split[split].append({"image_id": img["image_id"], "file_name": fname, "width": img["width"],
                                 "height": img["height"], "source_path": img["source_path"], "split": split})
        image_rows.append(_image_row(img, split, file_name, resolved[img["image_id"]], inputs,
                                     labels_by_image.get(img["image_id"], []), image_ids[img["image_id"]]))
    used = [s for s in SPLITS if per_split[s]]
    yolo_excluded: dict[str, list[str]] = {}
    # reviewed for tags only, never said to hold no box: out of the box / mask annotations
    unchecked = {r["image_id"] for r in image_rows
                 if layout.boxes_unchecked(r["resolution"], r["n_labels"], r["image_labels"])}
    for split in used:
        ims = per_split[split]
        ids = {i["image_id"] for i in ims} - unchecked
        obj = coco.build_coco([i for i in ims if i["image_id"] in ids], [lab for lab in released_labels if lab["image_id"] in ids], inputs.categories,
                              image_ids=image_ids, annotation_ids=ann_ids, keypoints=inputs.keypoints)
        views = {layout.instances_file(split): coco.instances_view(obj),
                 layout.keypoints_file(split): coco.keypoints_view(obj),
                 layout.segmentation_file(split): coco.segmentation_view(obj, inputs.mask_categories)}
        for rel, view in views.items():
            if view is not None:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / rel).write_bytes(coco.dumps_coco(view))
        for im in ims:
            own = labels_by_image.get(im["image_id"], [])
            if im["image_id"] in unchecked or yolo.yolo_view_excludes(own):
                yolo_excluded.setdefault(split, []).append(im["file_name"])
                continue
            txt = yolo.label_text(inputs.yolo_task, own, im["width"], im["height"], inputs.categories, kpt)
            p = out_dir / "labels" / split / (Path(im["file_name"]).stem + ".txt")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(txt, encoding="utf-8")
        if split in yolo_excluded and len(yolo_excluded[split]) < len(ims):
            left_out = set(yolo_excluded[split])
            listed = [f"./{layout.image_file(split, im['file_name'])}\n" for im in sorted(ims, key=lambda i: i["file_name"])
                      if im["file_name"] not in left_out]
            (out_dir / layout.yolo_list_file(split)).write_text("".join(listed), encoding="utf-8")
    pose = next((v for v in inputs.keypoints.values() if v.get("keypoints")), None) if kpt else None
    # a split whose every image holds only crowd regions has no YOLO view (Ultralytics refuses an
    # empty image list): data.yaml leaves it out
    yolo_splits = [s for s in used if len(yolo_excluded.get(s, [])) < len(per_split[s])]
    (out_dir / "data.yaml").write_text(
        yolo.data_yaml(inputs.categories, yolo_splits, kpt_shape=[kpt, 3] if kpt else None,
                       flip_idx=yolo.flip_index(pose["keypoints"]) if pose else None,
                       listed=[s for s in yolo_splits if s in yolo_excluded]), encoding="utf-8")
    if inputs.shard_mb:
        _pack_shards(out_dir, used, inputs.shard_mb, previous)
    if inputs.tag_categories:
        (out_dir / IMAGE_LABELS_FILE).write_text(image_labels_csv(image_rows, inputs.tags), encoding="utf-8")
    ordered = sorted(released_labels, key=lambda r: r["label_id"])
    tables.write_rows(ordered, LABELS, out_dir / "labels.parquet")
    tables.write_rows(sorted(image_rows, key=lambda r: r["image_id"]), RELEASE_IMAGES, out_dir / "images.parquet")
    lineage = release_lineage_rows(ordered, {r["image_id"]: r for r in image_rows}, ann_ids, inputs)
    tables.write_rows(lineage, RELEASE_LINEAGE, out_dir / "lineage.parquet")
    files = {p.relative_to(out_dir).as_posix(): _sha256(p) for p in sorted(out_dir.rglob("*")) if p.is_file()}
    released = {r["image_id"] for r in image_rows}
    counts = {
        "images": len(released),
        "labels": len(released_labels),
        "per_split": {s: len(per_split[s]) for s in used},
        "per_class": {c: sum(1 for lab in released_labels if lab["category"] == c) for c in inputs.categories},
        "per_origin": dict(sorted(Counter(lab["origin"] for lab in released_labels).items())),
        "negatives": sum(1 for i in released if not labels_by_image.get(i)),
        "crowd": sum(1 for lab in released_labels if lab.get("iscrowd")),
        # what the YOLO view cannot hold: the crowd regions above (left out of the label files,
        # as Ultralytics' COCO converter leaves them out), images whose only objects are crowd
        # regions (left out of the YOLO image lists: an empty label file would call them
        # negatives), and images Ultralytics' loader drops (a side under 10 px: its
        # verify_image_label asserts shape > 9)
        "yolo_excluded_images": sum(len(v) for v in yolo_excluded.values()),
        "tiny_images": sum(1 for r in image_rows if min(int(r["width"]), int(r["height"])) < TINY_SIDE),
    }
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    manifest = {"files": files, "counts": counts, "split_balance": plan.balance, "yolo_task": inputs.yolo_task,
                "guidelines_sha256": inputs.guidelines_sha256,
                "content_sha256": content, "warnings": dataset_warnings(counts, empty_splits(plan.split_of, inputs.ratios))}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def dataset_warnings(counts: dict, empty: list[str]) -> list[str]:
    """What a user of the release should know before training on it: empty splits (``empty``,
    :func:`labelloop.release.splits.empty_splits`), images left out of the YOLO view and images
    Ultralytics drops (``counts`` as :func:`build_release` makes them)."""
    out = list(empty)
    if counts.get("yolo_excluded_images"):
        out.append(f"{counts['yolo_excluded_images']} images hold only crowd regions: they are in the COCO files and "
                   "left out of the YOLO image lists (<split>.txt), since YOLO cannot hold crowd regions")
    if counts.get("tiny_images"):
        out.append(f"{counts['tiny_images']} images have a side under {TINY_SIDE} px: Ultralytics' loader drops them")
    return out


def swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with two renames (old release moved aside, then removed)."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)
