"""The ``review_queue`` stage of one batch: every image routed by confidence
(:mod:`labelloop.routing.confidence`), prioritized and budgeted by active learning
(:mod:`labelloop.routing.active_learning`), written to ``tables/review_queue/<batch>.parquet``.
"""

from __future__ import annotations

from typing import cast

from labelloop import tables
from labelloop.routing.active_learning import assign_reviewers, prioritize
from labelloop.routing.confidence import route_images
from labelloop.tables.schemas import REVIEW_QUEUE, ReviewQueueRow
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace


def route_batch(ws: Workspace, batch: str, model_id: str, reviewed: set[str] | frozenset = frozenset()) -> dict:
    """Route the batch's images by confidence (labelloop.routing.confidence) and write its review queue.

    Images in ``reviewed`` (image_ids) that the queue already holds keep their row (route,
    policy, QA-sample membership) as it was when they were reviewed; only the others are routed
    again, so a new policy or model re-routes unreviewed images and never touches reviewed ones.
    """
    cfg = ws.config()
    qp = repo.queue_path(ws, batch)
    old = ({q["image_id"]: q for q in cast(list[ReviewQueueRow], tables.read_rows(qp, REVIEW_QUEUE))}
           if qp.is_file() and reviewed else {})
    kept = [old[i] for i in old if i in reviewed]
    frozen = {q["image_id"] for q in kept}
    images = [r for r in repo.images_to_label(ws, batch) if r["image_id"] not in frozen]
    preds = [p for p in repo.batch_predictions(ws, batch, model_id) if p["image_id"] not in frozen]
    rows = assign_reviewers(prioritize(route_images(images, preds, cfg), images, preds, cfg), cfg)
    wanted = {r["image_id"] for r in repo.images_to_label(ws, batch)}
    rows = rows + [q for q in kept if q["image_id"] in wanted]  # reviewed rows last, unchanged
    tables.write_rows(rows, REVIEW_QUEUE, repo.queue_path(ws, batch))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["route"]] = counts.get(r["route"], 0) + 1
    return {"policy_id": cfg.policy_id(), "routes": counts, "images": len(rows)}
