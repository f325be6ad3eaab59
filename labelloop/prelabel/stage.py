"""The ``prelabels`` stage of one batch: every image to label through a :class:`~labelloop.prelabel.protocol.PreLabeler`,
predictions stored per ``(batch, model_id)`` in resumable part files.

Reads the batch's IMAGES rows (:func:`labelloop.workspace.repo.images_to_label`), writes
``tables/prelabels/<batch>/<model_id>/part-*.parquet`` (PREDICTIONS rows, boxes xyxy in pixels of
the EXIF-corrected image, masks COCO RLE) and returns a summary dict for the asset's metadata.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import cast

from labelloop import tables
from labelloop.prelabel.protocol import PreLabeler, iter_predictions
from labelloop.tables.schemas import PREDICTIONS, ImageRow, PredictionRow
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace


def prediction_id(model_id: str, image_id: str, category: str, index: int) -> str:
    """``pr-`` + 16 hex of sha256(model_id, image_id, category, rank within category)."""
    return "pr-" + hashlib.sha256(f"{model_id}\0{image_id}\0{category}\0{index}".encode()).hexdigest()[:16]


def prelabel_batch(ws: Workspace, batch: str, model: PreLabeler, run_id: str, chunk_size: int = 200,
                   skip: set[str] | frozenset = frozenset()) -> dict:
    """Predict every image of ``batch`` missing from ``(image_id, model_id)`` and store it.
    Images in ``skip`` (image_ids: the reviewed images, whose human labels win) are not predicted.

    Resumable: each chunk of ``chunk_size`` images is one part file (Parquet, atomic) whose
    metadata lists the images it covers (including those with no detection), so a re-run
    after a crash keeps finished chunks and computes only what is missing. A new model_id
    writes a new folder and never touches older predictions or human labels.
    """
    folder = repo.prelabel_dir(ws, batch, model.model_id)
    done = repo.done_image_ids(folder)
    todo = [r for r in repo.images_to_label(ws, batch) if r["image_id"] not in done]
    n_skipped = sum(1 for r in todo if r["image_id"] in skip)
    todo = [r for r in todo if r["image_id"] not in skip]
    first: dict[str | None, ImageRow] = {}  # one row per image_id, the first
    for r in todo:
        first.setdefault(r["image_id"], r)
    todo = list(first.values())
    n_parts = len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0
    started, n_pred, failed = time.perf_counter(), 0, []
    rows: list[PredictionRow] = []
    covered: list[str] = []
    pending = 0  # images of todo handled since the last part file

    def flush() -> None:
        nonlocal n_parts, n_pred, rows, covered, pending
        table = tables.to_table(rows, PREDICTIONS)
        table = table.replace_schema_metadata({repo.CHUNK_META: json.dumps(covered).encode()})
        tables.write_table(table, folder / f"part-{n_parts:05d}.parquet")
        n_parts, n_pred = n_parts + 1, n_pred + len(rows)
        rows, covered, pending = [], [], 0

    # One stream over the whole batch (the batched backend keeps its DataLoader running across
    # part files); a part file is written after every chunk_size images, in input order.
    ids = cast(list[str], [img["image_id"] for img in todo])  # ok rows: each has its sha256
    for i, result in iter_predictions(model, [ws.locate(img["uri"]) for img in todo], ids):
        img = todo[i]
        assert img["image_id"] is not None  # ok rows: each has its sha256
        pending += 1
        if isinstance(result, BaseException):  # undecodable file, or out of memory alone
            failed.append(f"{img['source_path']}: {result}")
        else:
            covered.append(img["image_id"])
            rank: dict[str, int] = {}
            for d in result:
                k = rank[d.category] = rank.get(d.category, -1) + 1
                rows.append({"prediction_id": prediction_id(model.model_id, img["image_id"], d.category, k),
                             "image_id": img["image_id"], "category": d.category, "bbox": list(d.bbox),
                             "score": d.score, "mask": d.mask, "model_id": model.model_id,
                             "checkpoint_sha256": model.checkpoint_sha256, "prompt": d.prompt, "run_id": run_id})
        if pending == chunk_size:
            flush()
    if pending:
        flush()
    seconds = time.perf_counter() - started
    return {"model_id": model.model_id, "device": model.device, "images_predicted": len(todo) - len(failed),
            "images_cached": len(done), "images_skipped_reviewed": n_skipped, "predictions_new": n_pred, "seconds": round(seconds, 3),
            "images_per_second": round((len(todo) - len(failed)) / seconds, 3) if seconds > 0 and todo else None,
            "failed": failed}
