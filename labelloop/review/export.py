"""The ``review_export`` stage of one batch: the files a review tool imports, with the model's
pre-annotations, for the images routed to review that active learning selected.

Writes ``review_out/<batch>/tasks.json`` + ``label_config.xml`` (Label Studio) and
``annotations.xml`` (CVAT for images 1.1), records what was sent in
``tables/review_export/<batch>.parquet`` and stamps the queue rows.

Every export records the labeling guidelines it was made under
(:mod:`labelloop.workspace.guidelines`): their sha256 in ``review_out/<batch>/export.json``, in
each Label Studio task's ``data.guidelines_sha256`` (so a Label Studio export carries it back),
on the queue rows of the exported images, and a copy of the text in
``review_out/<batch>/guidelines.md`` (what ``push-review`` sets as the project's instructions).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import cast

from labelloop import tables
from labelloop.formats import labelstudio
from labelloop.formats.cvat.writer import build_cvat_xml
from labelloop.review.gold import mix_honeypots
from labelloop.routing.active_learning import to_send
from labelloop.store import write_bytes_atomic, write_text_atomic
from labelloop.tables.schemas import EXPORTED_PREDICTIONS, REVIEW_QUEUE, ReviewQueueRow
from labelloop.workspace import repo
from labelloop.workspace.guidelines import GUIDELINES_FILE, read_guidelines_bytes
from labelloop.workspace.layout import Workspace


def export_batch(ws: Workspace, batch: str, model_id: str, reviewed: set[str]) -> dict:
    """Write ``review_out/<batch>/tasks.json`` (Label Studio import file with pre-annotations),
    ``label_config.xml`` and ``annotations.xml`` (the same pre-annotations as CVAT for images 1.1,
    :mod:`labelloop.formats.cvat.writer`) for the images routed to review that active learning selected, plus
    the QA sample (:func:`labelloop.routing.active_learning.to_send`), leaving out images already reviewed
    (``reviewed``: image_ids) unless ``review.resend_reviewed``. Records what was sent in
    ``tables/review_export/<batch>.parquet`` and stamps ``exported_to``/``exported_at`` and
    ``guidelines_sha256`` on the queue rows.

    The guidelines: ``guidelines_sha256`` (sha256 hex of the workspace's ``guidelines.md``, or
    ``"none"`` with a :class:`labelloop.workspace.guidelines.GuidelinesWarning` when it is missing)
    goes in every task's ``data``, in ``review_out/<batch>/export.json`` (``{"batch", "model_id",
    "exported_at", "tasks", "guidelines_sha256", "guidelines_file"}``) and in the value returned;
    the text is copied to ``review_out/<batch>/guidelines.md``."""
    cfg = ws.config()
    queue = cast(list[ReviewQueueRow], tables.read_rows(repo.queue_path(ws, batch), REVIEW_QUEUE))
    send = [q for q in to_send(queue) if cfg.review.resend_reviewed or q["image_id"] not in reviewed]
    ids = {q["image_id"] for q in send}
    images = [r for r in repo.images_to_label(ws, batch) if r["image_id"] in ids]
    low = {c.name: cfg.thresholds(c.name).low for c in cfg.categories}
    preds = [p for p in repo.batch_predictions(ws, batch, model_id) if p["image_id"] in ids and p["score"] >= low.get(p["category"], 2)]
    mask_cats = [c.name for c in cfg.categories if c.masks]  # their masks are reviewed as brush regions
    tasks, exported = labelstudio.build_import_tasks(
        images, preds, model_version=model_id, batch=batch, keypoints=cfg.keypoint_schema(), masks=mask_cats,
        reviewers={q["image_id"]: q.get("reviewers_required") or 1 for q in send}, tags=cfg.tag_categories)
    order = {q["image_id"]: i for i, q in enumerate(send)}
    tasks.sort(key=lambda t: order.get(t["data"]["image_id"], 0))  # highest priority first
    tasks, exported = mix_honeypots(ws, batch, model_id, tasks, exported)
    gl_bytes, guidelines = read_guidelines_bytes(ws.root)
    for t in tasks:
        t["data"]["guidelines_sha256"] = guidelines  # Label Studio exports a task's data back: the import reads it
    out = ws.review_out / batch
    out.mkdir(parents=True, exist_ok=True)
    copy = out / GUIDELINES_FILE
    if gl_bytes is not None:
        write_bytes_atomic(copy, lambda fh: fh.write(gl_bytes))  # the bytes its sha256 names, unchanged
    elif copy.exists():
        copy.unlink()  # an older export's copy: not the guidelines of this export
    write_text_atomic(out / "tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    write_text_atomic(out / "label_config.xml",
                 labelstudio.label_config_xml([c.name for c in cfg.located_categories()],
                                              keypoints=cfg.keypoint_schema() or None, masks=mask_cats or None,
                                              tags=cfg.tag_categories or None) + "\n")
    # tag pre-labels (image-level) go as <tag source="auto">, not as boxes
    tag_preds: dict[str, list[str]] = {}
    for p in preds:
        if p["category"] in cfg.tag_categories:
            tag_preds.setdefault(p["image_id"], []).append(p["category"])
    cvat_xml = build_cvat_xml(images, [p for p in preds if p["category"] not in cfg.tag_categories],
                              cfg.category_names, task_name=f"{cfg.project}/{batch}",
                              mask_shape=cfg.review.cvat_mask_shape, keypoints=cfg.keypoint_schema(),
                              tag_categories=cfg.tag_categories, tags={i: sorted(set(t)) for i, t in tag_preds.items()})
    write_text_atomic(out / "annotations.xml", cvat_xml.decode("utf-8"))
    tables.write_rows(exported, EXPORTED_PREDICTIONS, repo.exported_path(ws, batch))
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rel = ws.relative(out / "tasks.json")
    manifest = {"batch": batch, "model_id": model_id, "exported_at": now, "tasks": len(tasks),
                "guidelines_sha256": guidelines, "guidelines_file": GUIDELINES_FILE if gl_bytes is not None else None}
    write_text_atomic(out / "export.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for q in queue:
        if q["image_id"] in ids:
            q["exported_to"], q["exported_at"], q["guidelines_sha256"] = rel, now, guidelines
    tables.write_rows(queue, REVIEW_QUEUE, repo.queue_path(ws, batch))
    return {"tasks": len(tasks), "predictions_sent": len(exported), "already_reviewed": len(
        [q for q in queue if q["route"] != "auto_accept" and q["image_id"] in reviewed]), "file": rel,
        "guidelines_sha256": guidelines}
