"""Gold sets (honeypots): images with trusted reference labels, mixed into review batches.

As CVAT's ground-truth jobs / honeypots: a gold set is registered from any review file labelloop
imports (Label Studio JSON / JSON-MIN, CVAT for images 1.1, COCO JSON, a YOLO dataset zip) whose images are already
ingested in the workspace. Every
review export then carries up to ``qa.honeypots_per_batch`` gold images among its tasks, chosen
by a seeded hash of (seed, batch, image_id), looking like any other task (same data fields,
the model's pre-annotations when it has any). What reviewers draw on them is compared with the
gold labels (:mod:`labelloop.qa.gold_eval`).

Storage: ``tables/gold/<set>/labels.parquet`` (GOLD_LABELS) and ``images.parquet``
(GOLD_IMAGES; a gold image without labels is a trusted negative), written atomically;
re-registering a set replaces it. An image belongs to at most one set.

Reading (:func:`read_gold_file`): the review readers and image matching of review import, so a
file that imports as a review registers as gold; a bad image (unknown or ambiguous, size
mismatch, unknown category, bad box) is rejected alone with a reason naming it; the rest registers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Sequence, cast

from labelloop.formats import labelstudio
from labelloop.formats.labelstudio import ExportFormatError
from labelloop.formats.records import ReviewRecord, record_item
from labelloop.images.files import sha256_file
from labelloop.review.files import read_review_file
from labelloop.review.importer import regions_px
from labelloop.review.matching import ImageIndex, MatchReject
from labelloop.routing.confidence import kept_predictions
from labelloop.tables.schemas import ExportedPredictionRow, GoldImageRow, GoldLabelRow, ImageRow, PredictionRow
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


class GoldError(ValueError):
    """The gold file cannot be read at all (message names the file and the problem)."""


def gold_label_id(gold_set: str, image_id: str, item: str) -> str:
    """``gd-`` + 16 hex of sha256(set, image_id, item id in the file)."""
    return "gd-" + hashlib.sha256(f"{gold_set}\0{image_id}\0{item}".encode()).hexdigest()[:16]


def read_gold_file(path: str | Path, gold_set: str, images: Sequence[ImageRow], categories: list[str],
                   keypoints: dict[str, list[str]] | None = None, max_bytes: int | None = None) -> dict:
    """Read a review file (Label Studio JSON / JSON-MIN, CVAT for images 1.1, COCO, YOLO; through the
    same readers as review import, :func:`labelloop.review.files.read_review_file`) into gold rows
    matched to workspace images.

    Per task, the latest annotation (``updated_at``) is the gold one; a cancelled one is left out.
    Each record (one image) is taken or rejected alone: an unknown or ambiguous image, a size that
    disagrees with ours, an unknown category, a bad box or mask rejects that image with a reason
    naming it, and the rest registers. Images are matched as review import matches them
    (:class:`labelloop.review.matching.ImageIndex`: our image id, else the path), and also by a bare
    file name that is unique in the workspace (a person names the gold images). Crowd regions
    (COCO ``iscrowd: 1``) are not objects to match and are left out.

    Args:
        images: IMAGES rows of the workspace; categories: the project's category names;
        keypoints: ``{category: [keypoint names]}`` (CVAT skeletons, COCO keypoints);
        max_bytes: refuse a larger file (``review.max_export_mb``).
    The value returned:

        ``{"labels": [GOLD_LABELS rows], "images": [GOLD_IMAGES rows], "rejects": [{"item",
        "reason"}], "format": "label-studio" | "cvat" | "coco" | "yolo"}``; boxes in pixels of our image (xyxy).

    Raises:
        GoldError: unreadable file, or not a review file of any of the four formats.
    """
    path = Path(path)
    try:
        parsed = read_review_file(path, max_bytes=max_bytes, keypoints=keypoints)
        sha = sha256_file(path)
    except (ExportFormatError, OSError) as exc:
        raise GoldError(f"{path}: cannot read a gold file: {exc}") from None
    index = ImageIndex(images)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    common = {"gold_set": gold_set, "source_file": path.name, "source_sha256": sha, "registered_at": now}
    per_image: dict[str, list[GoldLabelRow]] = {}
    rejects: list[dict] = []
    latest: dict[str, ReviewRecord] = {}
    for rec in parsed["records"]:
        if rec.get("error"):
            rejects.append({"item": record_item(rec), "reason": str(rec["error"])})
            continue
        if rec.get("was_cancelled"):
            continue
        prev = latest.get(rec["task_id"])
        if prev is None or str(rec.get("updated_at")) > str(prev.get("updated_at")):
            latest[rec["task_id"]] = rec
    for tid in sorted(latest):
        rec = latest[tid]
        item = record_item(rec)
        try:
            ours = index.match(rec.get("image_ref"), rec.get("data_image_id"), by_stem=bool(rec.get("match_stem")))
            regions = regions_px(rec, ours, set(categories), keypoints)
        except MatchReject as exc:
            rejects.append({"item": item, "reason": str(exc)})
            continue
        assert ours["image_id"] is not None  # an ok row: it has its sha256
        rows: list[GoldLabelRow] = [cast(GoldLabelRow, common | {  # common: set, source file, sha256, time
            "gold_label_id": gold_label_id(gold_set, ours["image_id"],
                                           f"{tid}:{r['region_id'] if r['region_id'] is not None else '#' + str(r['index'])}"),
            "image_id": ours["image_id"], "category": r["category"], "bbox": r["bbox"], "mask": r.get("mask")})
            for r in regions if not r.get("iscrowd")]
        _add(per_image, ours["image_id"], rows, item, rejects)
    labels = [r for rows in per_image.values() for r in rows]
    gold_images: list[GoldImageRow] = [{"gold_set": gold_set, "image_id": i, "n_labels": len(rows)}
                                       for i, rows in sorted(per_image.items())]
    return {"labels": sorted(labels, key=lambda r: (r["image_id"], r["gold_label_id"])), "images": gold_images,
            "rejects": rejects, "format": parsed["format"]}


def _add(per_image: dict[str, list[GoldLabelRow]], image_id: str, rows: list[GoldLabelRow], item: str,
         rejects: list[dict]) -> None:
    if image_id in per_image:
        rejects.append({"item": item, "reason": f"image {image_id[:12]} appears twice in the file; the first is kept"})
        return
    per_image[image_id] = rows


def register_gold(root: Workspace | Path, path: str | Path, gold_set: str, images: Sequence[ImageRow],
                  categories: list[str], keypoints: dict[str, list[str]] | None = None,
                  max_bytes: int | None = None) -> dict:
    """Register (or replace) gold set ``gold_set`` from ``path``; see :func:`read_gold_file`.

    Images already in another gold set are rejected (an image belongs to one set).
    Returns ``{"gold_set", "format", "images", "labels", "rejects": ["item: reason"]}``.
    Raises:
        GoldError: bad set name, unreadable file, or no image of the file could be registered.
    """
    if not SET_NAME.fullmatch(gold_set):
        raise GoldError(f"invalid gold set name {gold_set!r}: letters, digits, '.', '_', '-' (up to 80)")
    res = read_gold_file(path, gold_set, images, categories, keypoints, max_bytes)
    others = {r["image_id"]: r["gold_set"] for r in repo.read_gold_images(root) if r["gold_set"] != gold_set}
    clash = {r["image_id"] for r in res["images"] if r["image_id"] in others}
    for i in sorted(clash):
        res["rejects"].append({"item": f"image {i[:12]}", "reason": f"already in gold set {others[i]!r}"})
    gold_images = [r for r in res["images"] if r["image_id"] not in clash]
    labels = [r for r in res["labels"] if r["image_id"] not in clash]
    if not gold_images:
        why = "; ".join(f"{r['item']}: {r['reason']}" for r in res["rejects"][:5]) or "the file has no image"
        raise GoldError(f"{path}: no image could be registered as gold ({why})")
    repo.write_gold_set(root, gold_set, labels, gold_images)
    return {"gold_set": gold_set, "format": res["format"], "images": len(gold_images), "labels": len(labels),
            "rejects": [f"{r['item']}: {r['reason']}" for r in res["rejects"]]}


# ---- honeypots -----------------------------------------------------------------------------------
def honeypot_key(seed: int, batch: str, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{batch}:{image_id}".encode()).hexdigest()


def choose_honeypots(gold_image_ids: list[str], batch: str, k: int, seed: int = 0,
                     exclude: set[str] | frozenset = frozenset()) -> list[str]:
    """The ``k`` gold images with the smallest ``sha256(f"{seed}:{batch}:{image_id}")`` not in
    ``exclude``: reproducible per batch, and a different draw for each batch."""
    pool = sorted(set(gold_image_ids) - set(exclude))
    return sorted(pool, key=lambda i: honeypot_key(seed, batch, i))[: max(0, k)]


def mix_tasks(tasks: list[dict], honeypots: list[dict], batch: str, seed: int = 0) -> list[dict]:
    """Insert honeypot tasks among ``tasks`` at positions drawn from a hash of their image_id, so
    they sit among the others rather than at the end (the order is otherwise unchanged)."""
    out = list(tasks)
    for t in sorted(honeypots, key=lambda t: t["data"]["image_id"]):
        pos = int(honeypot_key(seed, batch, t["data"]["image_id"])[:8], 16) % (len(out) + 1)
        out.insert(pos, t)
    return out


def honeypot_tasks(images: Sequence[ImageRow], predictions: Sequence[PredictionRow], gold_image_ids: list[str],
                   batch: str, k: int, model_version: str, seed: int = 0, exclude: set[str] | frozenset = frozenset()
                   ) -> tuple[list[dict], list[ExportedPredictionRow]]:
    """Label Studio tasks (and EXPORTED_PREDICTIONS rows) for the honeypots of ``batch``.

    Args:
        images: IMAGES rows of the workspace (status ok); predictions: kept predictions of the
            current model (any images); gold_image_ids: registered gold images;
        exclude: image_ids already among the batch's tasks.
    Returns ``(tasks, exported)`` as :func:`labelloop.formats.labelstudio.tasks.build_import_tasks` builds them,
    so a honeypot looks like any other task of the batch.
    """
    by_id: dict[str | None, ImageRow] = {}
    for r in sorted(images, key=lambda r: (r.get("duplicate_of") is not None, r["source_path"])):
        if r.get("status") == "ok":
            by_id.setdefault(r["image_id"], r)
    chosen = choose_honeypots([i for i in gold_image_ids if i in by_id], batch, k, seed, exclude)
    if not chosen:
        return [], []
    rows = [by_id[i] for i in chosen]
    preds = [p for p in predictions if p["image_id"] in set(chosen)]
    return labelstudio.build_import_tasks(rows, preds, model_version=model_version, batch=batch)


def mix_honeypots(ws: Workspace, batch: str, model_id: str, tasks: list[dict], exported: list[ExportedPredictionRow]
                  ) -> tuple[list[dict], list[ExportedPredictionRow]]:
    """Add ``qa.honeypots_per_batch`` gold images to a batch's review export (unchanged when no
    gold set is registered). Called by :func:`labelloop.review.export.export_batch`."""
    cfg = ws.config()
    gold_ids = [r["image_id"] for r in repo.read_gold_images(ws)]
    if not gold_ids or cfg.qa.honeypots_per_batch <= 0:
        return tasks, exported
    present = {t["data"]["image_id"] for t in tasks}
    preds = kept_predictions([p for p in repo.current_predictions(ws, model_id) if p["image_id"] in set(gold_ids)], cfg)
    preds = [p for p in preds if p["category"] not in cfg.tag_categories]  # gold sets hold boxes, not tags
    extra, extra_rows = honeypot_tasks(repo.all_images(ws), preds, gold_ids, batch, cfg.qa.honeypots_per_batch,
                                       model_version=model_id, seed=cfg.routing.seed, exclude=present)
    return mix_tasks(tasks, extra, batch, cfg.routing.seed), exported + extra_rows
