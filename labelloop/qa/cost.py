"""Labeling cost: the release labeled by hand, the review actually done, and the saving.

Unit prices come from ``cost:`` in labelloop.yaml (:class:`labelloop.workspace.config.Cost`); the defaults
sit in the middle of the ranges annotation vendors publish: image classification $0.03-0.10 per
image, bounding boxes $0.02-0.10 per object, segmentation masks $0.10-3.00 per object.

- by hand: every resolved image once (``classification_per_image``), plus every label's box
  (``box_per_object``), plus every label with a mask (``mask_per_object``).
- review done: every reviewed image once, plus each box a reviewer drew or corrected at the box
  price, each pre-annotation accepted unchanged at ``accepted_box_factor`` of it, and each
  deletion at the box price (a decision on an object), plus human masks at the mask price.
- saving = by hand - review done (negative when review cost more).
"""

from __future__ import annotations

from typing import Sequence

from labelloop.tables.schemas import HumanLabelRow, LabelRow, ResolvedImageRow
from labelloop.workspace.config import Cost


def estimate_cost(labels: Sequence[LabelRow], resolved_images: Sequence[ResolvedImageRow],
                  human_labels: Sequence[HumanLabelRow], prices: Cost) -> dict:
    """Cost figures in ``prices.currency``, rounded to cents.

    Args:
        labels: resolved LABELS rows (origin, action, mask); resolved_images: RESOLVED_IMAGES rows;
        human_labels: HUMAN_LABELS rows of the latest reviews (deletion markers included).
    Returns ``{"currency", "prices", "by_hand": {...}, "review_done": {...}, "saving", "saving_share"}``
    where each part has its counts and ``total``; ``saving_share`` is None when nothing is priced.
    """
    n_images = len({r["image_id"] for r in resolved_images})
    n_boxes = len(labels)
    n_masks = sum(1 for lab in labels if lab.get("mask"))
    by_hand = {"images": n_images, "boxes": n_boxes, "masks": n_masks,
               "total": round(n_images * prices.classification_per_image + n_boxes * prices.box_per_object
                              + n_masks * prices.mask_per_object, 2)}
    reviewed = {r["image_id"] for r in resolved_images if r.get("resolution") == "reviewed"}
    counts = {"accepted": 0, "corrected": 0, "added": 0, "deleted": 0}
    masks = 0
    for h in human_labels:
        if h["image_id"] not in reviewed:
            continue
        a = h.get("action")
        if a in counts:
            counts[a] += 1
        if h.get("mask") and a != "deleted":
            masks += 1
    total = (len(reviewed) * prices.classification_per_image
             + counts["accepted"] * prices.box_per_object * prices.accepted_box_factor
             + (counts["corrected"] + counts["added"] + counts["deleted"]) * prices.box_per_object
             + masks * prices.mask_per_object)
    review = {"images": len(reviewed), **counts, "masks": masks, "total": round(total, 2)}
    saving = round(by_hand["total"] - review["total"], 2)
    return {"currency": prices.currency, "prices": prices.model_dump(), "by_hand": by_hand, "review_done": review,
            "saving": saving, "saving_share": round(saving / by_hand["total"], 4) if by_hand["total"] else None}
