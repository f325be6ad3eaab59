"""Build the files of a dataset release (COCO JSON + YOLO TXT + provenance), deterministically.

Layout of ``release/`` (paths relative to it)::

    images/<split>/<image_id[:16]>.<ext>   EXIF-applied copies (what the boxes refer to)
    coco/instances_<split>.json            COCO detection JSON; file_name is relative to release/
    labels/<split>/<image_id[:16]>.txt     YOLO labels (empty file = reviewed negative)
    data.yaml                              Ultralytics dataset file (no `path`: resolved here)
    labels.parquet                         every label with its provenance (LABELS schema)
    manifest.json                          sha256 of every file above, counts, splits

Splits (train/val/test) come from a hash of the image's near-duplicate group representative
(``near_duplicate_of`` or its own image_id): near duplicates share a split and an image keeps
its split across releases. Files hold no timestamps and use sorted keys, so the same labels
give the same bytes; ``content_sha256`` (sha256 of the manifest's file table) identifies a
release's content.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from labelloop import coco, tables, yolo
from labelloop.images import save_release_copy
from labelloop.schemas import LABELS

SPLITS = ("train", "val", "test")


def split_for(group_id: str, ratios: dict[str, float]) -> str:
    """Deterministic split of a near-duplicate group: ``int(sha256(group_id)[:8], 16) / 2**32``
    compared with the cumulative ``ratios`` (train, val, test order)."""
    u = int(hashlib.sha256(group_id.encode()).hexdigest()[:8], 16) / 2**32
    acc = 0.0
    for name in SPLITS:
        acc += ratios.get(name, 0.0)
        if u < acc:
            return name
    return SPLITS[-1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_release(
    out_dir: Path,
    root: Path,
    resolved: list[dict],
    labels: list[dict],
    images: list[dict],
    categories: list[str],
    ratios: dict[str, float],
) -> dict:
    """Write a release into the empty folder ``out_dir``.

    ``resolved``: RESOLVED_IMAGES rows; ``labels``: LABELS rows; ``images``: IMAGES rows (uri
    relative to ``root``). Returns the manifest dict (``files``, ``counts``, ``content_sha256``).

    Raises:
        ValueError: a label has an unknown category (from :func:`labelloop.coco.build_coco`).
        labelloop.images.ImageError: a stored image can no longer be decoded.
    """
    out_dir = Path(out_dir)
    by_id: dict[str, dict] = {}
    for img in sorted(images, key=lambda r: r["ingest_seq"]):
        if img["status"] == "ok":
            by_id.setdefault(img["image_id"], img)
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in sorted(resolved, key=lambda r: r["image_id"]):
        img = by_id[r["image_id"]]
        split = split_for(img.get("near_duplicate_of") or img["image_id"], ratios)
        fname = save_release_copy(root / img["uri"], out_dir / "images" / split, img["image_id"][:16])
        per_split[split].append({"image_id": img["image_id"], "file_name": f"images/{split}/{fname}",
                                 "width": img["width"], "height": img["height"],
                                 "source_path": img["source_path"], "split": split})
    labels_by_image: dict[str, list[dict]] = {}
    for lab in labels:
        labels_by_image.setdefault(lab["image_id"], []).append(lab)
    used = [s for s in SPLITS if per_split[s]]
    for split in used:
        ims = per_split[split]
        ids = {i["image_id"] for i in ims}
        obj = coco.build_coco(ims, [lab for lab in labels if lab["image_id"] in ids], categories)
        (out_dir / "coco").mkdir(parents=True, exist_ok=True)
        (out_dir / "coco" / f"instances_{split}.json").write_bytes(coco.dumps_coco(obj))
        for im in ims:
            txt = yolo.yolo_lines(labels_by_image.get(im["image_id"], []), im["width"], im["height"], categories)
            p = out_dir / "labels" / split / (Path(im["file_name"]).stem + ".txt")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(txt, encoding="utf-8")
    (out_dir / "data.yaml").write_text(yolo.data_yaml(categories, used), encoding="utf-8")
    released = {i["image_id"] for s in used for i in per_split[s]}
    tables.write_rows(sorted((lab for lab in labels if lab["image_id"] in released), key=lambda r: r["label_id"]),
                      LABELS, out_dir / "labels.parquet")
    files = {p.relative_to(out_dir).as_posix(): _sha256(p) for p in sorted(out_dir.rglob("*")) if p.is_file()}
    counts = {
        "images": len(released),
        "labels": sum(1 for lab in labels if lab["image_id"] in released),
        "per_split": {s: len(per_split[s]) for s in used},
        "per_class": {c: sum(1 for lab in labels if lab["category"] == c and lab["image_id"] in released)
                      for c in categories},
        "negatives": sum(1 for i in released if not labels_by_image.get(i)),
    }
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    manifest = {"files": files, "counts": counts, "content_sha256": content}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with two renames (old release moved aside, then removed)."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)
