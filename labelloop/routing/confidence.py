"""Confidence routing: which images a human reviews.

Per image (pre-labels of the current model): predictions below their category's ``low``
threshold are dropped; the image is auto-accepted when every remaining prediction scores at
least its category's ``high`` threshold, and goes to human review otherwise, including when
none remain (the detector saw nothing it trusts; a human decides whether it is a negative).
A seeded, reproducible QA sample of the auto-accepted images (``qa_sample_rate``, rounded up,
at least one when any exist) is also sent to review to audit the auto-accepted labels.

Tag categories (``level: tag``, image-level labels) are routed like boxes from their image-level
pre-labels (a PREDICTIONS row of the tag category whose score is the best box score of its prompt,
:func:`labelloop.prelabel.protocol.image_level_tags`): kept at or above the category's ``low``
threshold, auto-accepted only when at or above its ``high``. The foundation and sam3 backends give
them; the embedded classical backend (``opencv``) has no text prompt and gives none, so with it every
image of a project with tag categories goes to review (reason "tag categories ... have no
pre-label"), where the reviewer gives its tags.

Priority is least confidence first (Settles, "Active Learning Literature Survey", 2009):
``priority = 1 - min(kept scores)``, 1.0 for an image with no kept prediction; QA-sample
images get priority 0 so they are reviewed after the uncertain ones.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Sequence, cast

from labelloop.tables.schemas import ImageRow, PredictionRow, ReviewQueueRow
from labelloop.workspace.config import ProjectConfig

AUTO = "auto_accept"
QA_SAMPLE = "qa_sample"
REVIEW = "human_review"


def kept_predictions(predictions: Sequence[PredictionRow], config: ProjectConfig) -> list[PredictionRow]:
    """Predictions at or above their category's ``low`` threshold (unknown categories dropped)."""
    names = set(config.category_names)
    return [p for p in predictions if p["category"] in names and p["score"] >= config.thresholds(p["category"]).low]


def _sample_key(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def route_images(images: Sequence[ImageRow], predictions: Sequence[PredictionRow],
                 config: ProjectConfig) -> list[ReviewQueueRow]:
    """Route ``images`` (IMAGES rows to pre-label: ok, not duplicates) given their predictions.

    Returns REVIEW_QUEUE rows (without export columns) sorted by descending priority, then
    source_path. The QA sample is the ``k`` auto-accepted images with the smallest
    ``sha256(f"{seed}:{image_id}")``: reproducible and independent of batch order.
    """
    by_image: dict[str | None, list[PredictionRow]] = defaultdict(list)
    for p in kept_predictions(predictions, config):
        by_image[p["image_id"]].append(p)
    policy = config.policy_id()
    rows: list[ReviewQueueRow] = []
    for img in images:
        kept = by_image.get(img["image_id"], [])
        # route, priority and reason are set below; export and active-learning columns come later (null until then)
        row = cast(ReviewQueueRow, {
            "image_id": img["image_id"], "source_path": img["source_path"], "policy_id": policy,
            "n_predictions": len(kept), "min_score": min((p["score"] for p in kept), default=None)})
        # the opencv backend gives no tag pre-label: a reviewer gives the tags (module docstring)
        untagged = bool(config.tag_categories) and config.prelabeler.backend == "opencv"
        if not kept:
            row.update({"route": REVIEW, "priority": 1.0, "reason": "no prediction at or above its low threshold"})
        elif untagged:
            row.update({"route": REVIEW, "priority": round(1.0 - min(p["score"] for p in kept), 6),
                        "reason": f"tag categories ({', '.join(config.tag_categories)}) have no pre-label: "
                                  "a reviewer gives the image's tags"})
        else:
            below = [p for p in kept if p["score"] < config.thresholds(p["category"]).high]
            assert row["min_score"] is not None  # kept is not empty
            row["priority"] = round(1.0 - row["min_score"], 6)
            if below:
                worst = min(below, key=lambda p: p["score"])
                t = config.thresholds(worst["category"]).high
                shown = f"{worst['score']:.3f}"
                if float(shown) >= t:  # never print a score rounded up to its threshold
                    shown = f"{worst['score']:.6f}"
                row.update({"route": REVIEW, "reason": f"{len(below)} of {len(kept)} below high threshold "
                            f"(lowest {worst['category']} {shown} < {t})"})
            else:
                row.update({"route": AUTO, "reason": f"all {len(kept)} predictions at or above high threshold"})
        rows.append(row)
    auto = [r for r in rows if r["route"] == AUTO]
    if auto:
        k = max(1, math.ceil(config.routing.qa_sample_rate * len(auto)))
        for r in sorted(auto, key=lambda r: _sample_key(config.routing.seed, r["image_id"]))[:k]:
            r.update({"route": QA_SAMPLE, "priority": 0.0,
                      "reason": f"QA sample of auto-accepted images ({config.routing.qa_sample_rate:.0%}, seed "
                      f"{config.routing.seed}); " + r["reason"]})
    return sorted(rows, key=lambda r: (-r["priority"], r["source_path"]))
