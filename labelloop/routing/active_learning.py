"""Active learning: which routed images a human reviews first, and which fit a batch's budget.

Per image, from the current model's predictions (all of them, also those below the ``low``
threshold: a weak detection is exactly where the model is unsure):

1. **Objects and their class distribution.** Detections of different classes that overlap
   (IoU >= ``match_iou``, class-agnostic, greedy by score) are one object whose class scores are
   the best score per class; a row may instead carry its own ``class_scores``
   (``{category: score}``, e.g. a detector's per-prompt scores). An object's distribution over
   the ``K`` categories plus background is ``p = normalize([s_1 .. s_K, 1 - max_c s_c])``; a lone
   detection of score ``s`` gives ``(s, 1 - s)``.
2. **Uncertainty** of an object (Settles, "Active Learning Literature Survey", 2009, section 3.1):
   least confidence ``1 - max p``; margin ``1 - (p_(1) - p_(2))``; entropy ``-sum p log p / log(K + 1)``
   (normalized to [0, 1]). **Disagreement** of detector and segmenter: ``1 - IoU(box, tight box
   of the mask)`` for predictions with a mask (``labelloop.geometry.masks.rle_bbox_xyxy``). An image takes
   the maximum over its objects (the most uncertain object decides; Brust et al., "Active
   Learning for Deep Object Detection", 2018, compare max / sum / mean aggregation). An image
   with no prediction gets ``empty_image_uncertainty``.
3. **Strategy**: one of the four measures, or ``combined`` = their weighted mean (``weights``).
4. **Diversity and budget** (greedy, as in core-set / diversity-weighted selection): repeatedly
   take the ``human_review`` image with the highest
   ``score = (1 - diversity_weight) * uncertainty + diversity_weight * d / 64``, where ``d`` is its
   smallest perceptual-hash Hamming distance (64-bit ``imagehash.phash``) to an image already
   taken in this batch (64 for the first); an image within ``min_phash_distance`` of a taken one
   is a near duplicate and is taken only once no distinct image is left, so the budget ``K`` is
   never spent on near duplicates while other images wait. Once ``K`` images are taken the rest
   are ``near_duplicate`` or ``over_budget`` (they stay routed to review, unsent, unresolved;
   raise the budget or re-route to send them). Without a budget every image is sent, near
   duplicates last.

QA-sample images are always sent (the audit must not depend on the model's uncertainty), and
auto-accepted ones are not sent. The decision, its figures and a one-line reason are stored on
every REVIEW_QUEUE row; ``priority`` becomes the selection score, so the export lists images in
selection order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from typing import Any, Mapping, Sequence, cast

import numpy as np

from labelloop.geometry.boxes import iou
from labelloop.geometry.masks import rle_bbox_xyxy
from labelloop.tables.schemas import ImageRow, PredictionRow, ReviewQueueRow

MEASURES = ("least_confidence", "margin", "entropy", "disagreement")
SELECTED, OVER_BUDGET, NEAR_DUPLICATE, QA, NOT_NEEDED = "selected", "over_budget", "near_duplicate", "qa_sample", "not_needed"


def class_distribution(scores: dict[str, float], n_categories: int) -> np.ndarray:
    """``normalize([s_c for the object's classes] + [1 - max s_c])`` sorted descending (float64).

    ``n_categories`` only checks that no more classes than exist are given.
    """
    s = np.clip(np.asarray([float(v) for v in scores.values()], dtype=float), 0.0, 1.0)
    if s.size == 0 or s.size > n_categories:
        raise ValueError(f"an object needs 1..{n_categories} class scores, got {len(scores)}")
    p = np.append(s, 1.0 - s.max())
    total = p.sum()
    p = p / total if total > 0 else np.full(p.size, 1.0 / p.size)
    return np.sort(p)[::-1]


def uncertainty(p: np.ndarray, n_categories: int) -> dict[str, float]:
    """Least confidence, margin and normalized entropy of a (sorted) distribution ``p``."""
    p = np.asarray(p, dtype=float)
    lc = 1.0 - float(p[0])
    margin = 1.0 - float(p[0] - (p[1] if p.size > 1 else 0.0))
    nz = p[p > 0]
    ent = float(-(nz * np.log(nz)).sum() / math.log(n_categories + 1)) if n_categories >= 1 else 0.0
    return {"least_confidence": lc, "margin": margin, "entropy": min(max(ent, 0.0), 1.0)}


def objects(predictions: Sequence[Mapping[str, Any]], match_iou: float) -> list[dict[str, float]]:
    """Group one image's predictions into objects: ``[{category: best score}]`` (see module doc)."""
    preds = sorted(predictions, key=lambda p: (-float(p["score"]), p.get("prediction_id") or ""))
    groups: list[dict] = []
    for p in preds:
        own = p.get("class_scores")
        if own:
            groups.append({"box": p["bbox"], "scores": {str(k): float(v) for k, v in dict(own).items()}})
            continue
        for g in groups:
            if iou(g["box"], p["bbox"]) >= match_iou:
                g["scores"][p["category"]] = max(g["scores"].get(p["category"], 0.0), float(p["score"]))
                break
        else:
            groups.append({"box": p["bbox"], "scores": {p["category"]: float(p["score"])}})
    return [g["scores"] for g in groups]


def disagreement(predictions: Sequence[Mapping[str, Any]]) -> float:
    """Max over predictions with a mask of ``1 - IoU(box, tight box of the mask)``; 0 without masks."""
    worst = 0.0
    for p in predictions:
        if p.get("mask"):
            try:
                worst = max(worst, 1.0 - iou(p["bbox"], rle_bbox_xyxy(p["mask"])))
            except ValueError:
                worst = 1.0  # an unreadable mask: the two models certainly disagree
    return worst


def image_scores(predictions: Sequence[Mapping[str, Any]], n_categories: int, *, match_iou: float = 0.5,
                 empty: float = 1.0) -> dict[str, float]:
    """The four measures of one image (each in [0, 1]); ``empty`` for all four without predictions
    (disagreement 0)."""
    if not predictions:
        return {"least_confidence": empty, "margin": empty, "entropy": empty, "disagreement": 0.0}
    out = {"least_confidence": 0.0, "margin": 0.0, "entropy": 0.0}
    for scores in objects(predictions, match_iou):
        u = uncertainty(class_distribution(scores, n_categories), n_categories)
        out = {k: max(out[k], u[k]) for k in out}
    out["disagreement"] = disagreement(predictions)
    return out


def strategy_uncertainty(m: dict[str, float], strategy: str, weights: dict[str, float]) -> float:
    """The image-level uncertainty of a strategy: one measure, or the weighted mean (``combined``)."""
    if strategy != "combined":
        return float(m[strategy])
    total = sum(weights.get(k, 0.0) for k in MEASURES)
    return float(sum(weights.get(k, 0.0) * m[k] for k in MEASURES) / total)


def hamming(a: str | None, b: str | None) -> int:
    """Bits that differ between two hex perceptual hashes (64 when either is missing)."""
    if not a or not b:
        return 64
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def prioritize(queue: list[ReviewQueueRow], images: Sequence[ImageRow], predictions: Sequence[PredictionRow],
               config) -> list[ReviewQueueRow]:
    """Add the active-learning columns to REVIEW_QUEUE rows (see the module docstring).

    Args:
        queue: rows of :func:`labelloop.routing.confidence.route_images` for one batch.
        images: IMAGES rows of those images (``image_id``, ``phash``).
        predictions: all PREDICTIONS of the current model for those images.
        config: the ProjectConfig (``active_learning``, ``category_names``).

    Returns:
        The rows with ``al_*`` columns, ``priority`` = selection score (QA sample 0, auto 0),
        sorted by decision (selected, then QA sample, over budget, near duplicate, not needed),
        then rank / priority.
    """
    al = config.active_learning
    n_cat = len(config.category_names)
    phash = {r["image_id"]: r.get("phash") for r in images}
    by_image: dict[str, list[PredictionRow]] = defaultdict(list)
    for p in predictions:
        by_image[p["image_id"]].append(p)
    rows = [r.copy() for r in queue]
    for r in rows:
        m = image_scores(by_image.get(r["image_id"], []), n_cat, match_iou=al.match_iou,
                         empty=al.empty_image_uncertainty)
        r.update(cast(ReviewQueueRow, {k: round(v, 6) for k, v in m.items()}))  # the MEASURES columns
        r["al_strategy"] = al.strategy
        r["al_uncertainty"] = round(strategy_uncertainty(m, al.strategy, al.weights), 6)
        r["al_rank"], r["al_score"], r["diversity"] = None, None, None
        if r["route"] == "auto_accept":
            r.update({"al_decision": NOT_NEEDED, "priority": 0.0, "al_reason": "auto-accepted: not sent to review"})
        elif r["route"] == "qa_sample":
            r.update({"al_decision": QA, "priority": 0.0,
                      "al_reason": "QA sample of auto-accepted images: always sent"})
    pool = sorted((r for r in rows if r["route"] == "human_review"), key=lambda r: r["image_id"])
    budget = al.budget if al.budget is not None else len(pool)
    _select(pool, [phash.get(r["image_id"]) for r in pool], budget, al)
    order: dict[str | None, int] = {SELECTED: 0, QA: 1, OVER_BUDGET: 2, NEAR_DUPLICATE: 3, NOT_NEEDED: 4}
    return sorted(rows, key=lambda r: (order[r["al_decision"]], r["al_rank"] or 0, -(r["priority"] or 0.0),
                                       r["source_path"]))


_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (``np.bitwise_count`` where numpy has it, else a byte lookup table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _BITS[x.view(np.uint8)].reshape(-1, 8).sum(axis=1)


def _select(pool: list[ReviewQueueRow], hashes: list[str | None], budget: int, al) -> None:
    """Greedy uncertainty + diversity selection over ``pool`` (sorted by image_id), in place.

    Keeps, per candidate, the smallest Hamming distance to the images taken so far (updated
    after each pick: O(pool) per pick, vectorized), so a batch of N images costs O(N * K).
    """
    n = len(pool)
    if n == 0:
        return
    u = np.array([r["al_uncertainty"] for r in pool], dtype=float)
    has = np.array([h is not None and h != "" for h in hashes])
    hv = np.array([int(h, 16) if h else 0 for h in hashes], dtype=np.uint64)
    mind = np.full(n, 64, dtype=np.int64)
    nearest = np.full(n, -1, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    w = al.diversity_weight
    taken = 0
    while taken < budget:
        near_dup = (nearest >= 0) & (mind <= al.min_phash_distance)
        ok = alive & ~near_dup
        if not ok.any():
            ok = alive  # only near duplicates left: they come last, never before a distinct image
            if not ok.any():
                break
        score = (1 - w) * u + w * mind / 64.0
        masked = np.where(ok, score, -np.inf)
        cand = np.flatnonzero(masked >= masked.max() - 1e-12)  # ties: most uncertain, then image_id
        best = cand[np.argmax(u[cand])] if cand.size > 1 else cand[0]
        taken += 1
        alive[best] = False
        r = pool[best]
        d = int(mind[best])
        dup = f" (a near duplicate of {pool[nearest[best]]['source_path']}: taken after every distinct image)" \
            if near_dup[best] else ""
        r.update({"al_rank": taken, "al_decision": SELECTED, "al_score": round(float(score[best]), 6),
                  "diversity": round(d / 64.0, 6), "priority": round(float(score[best]), 6),
                  "al_reason": f"rank {taken}: {al.strategy} uncertainty {u[best]:.3f}, phash distance to the nearest "
                  f"chosen image {d} of 64{dup}"})
        if has[best]:
            dist = np.where(has, _popcount(hv ^ hv[best]), 64)
            closer = alive & (dist < mind)
            mind[closer], nearest[closer] = dist[closer], best
    score = (1 - w) * u + w * mind / 64.0
    for i in np.flatnonzero(alive):
        r, d = pool[i], int(mind[i])
        r.update({"al_score": round(float(score[i]), 6), "diversity": round(d / 64.0, 6),
                  "priority": round(float(score[i]), 6)})
        if nearest[i] >= 0 and d <= al.min_phash_distance:
            r.update({"al_decision": NEAR_DUPLICATE, "al_reason": f"near duplicate (phash distance {d} <= "
                      f"{al.min_phash_distance}) of chosen image {pool[nearest[i]]['source_path']}: not sent"})
        else:
            r.update({"al_decision": OVER_BUDGET, "al_reason": f"over the budget of {budget} images per batch "
                      f"(score {score[i]:.3f}): not sent"})


def to_send(queue: Sequence[ReviewQueueRow]) -> list[ReviewQueueRow]:
    """Rows the review export sends: routed to review and, when the row has an active-learning
    decision, selected or in the QA sample (rows routed before active learning keep old behaviour)."""
    return [q for q in queue if q["route"] != "auto_accept" and q.get("al_decision") in (None, SELECTED, QA)]


def al_policy_id(config) -> str:
    """``al-`` + 12 hex of sha256 over the active-learning settings, the double-review share and
    the routing seed (canonical JSON); stored on every queue row, so changing them re-routes."""
    body = {"active_learning": config.active_learning.model_dump(), "seed": config.routing.seed,
            "double_review_share": config.review.double_review_share}
    return "al-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def assign_reviewers(queue: list[ReviewQueueRow], config) -> list[ReviewQueueRow]:
    """Double review: ``reviewers_required`` = 2 on a seeded share of the rows that will be sent
    (``review.double_review_share`` of them, rounded up; none when the share is 0), 1 on the
    other sent rows, None on rows not sent. The share is the ``k`` sent images with the smallest
    ``sha256(f"{seed}:double-review:{image_id}")``: reproducible, independent of batch order.
    Also stamps ``al_policy_id``. Both reviewers' annotations are kept (each its own identity in
    the review store) and both count for agreement; labels use the most recent one."""
    rows = [r.copy() for r in queue]
    sent = to_send(rows)
    share = config.review.double_review_share
    k = math.ceil(share * len(sent)) if share > 0 else 0

    def key(r: ReviewQueueRow) -> str:
        return hashlib.sha256(f"{config.routing.seed}:double-review:{r['image_id']}".encode()).hexdigest()

    double = {r["image_id"] for r in sorted(sent, key=key)[:k]}
    sent_ids = {r["image_id"] for r in sent}
    pid = al_policy_id(config)
    for r in rows:
        r["al_policy_id"] = pid
        r["reviewers_required"] = (2 if r["image_id"] in double else 1) if r["image_id"] in sent_ids else None
    return rows
