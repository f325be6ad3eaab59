"""Progressive labeling: which annotation level (``tag`` | ``box`` | ``mask``) each class needs.

Instance masks cost 3-10x boxes (the cost model's default prices: $1.55 a mask, $0.06 a box,
:class:`labelloop.workspace.config.Cost`), so a class is worth masks only where its boxes fit its
objects poorly: thin, diagonal or hollow objects (pens, road markings, a bicycle frame) fill little
of their box. The measure is the **mask-fill ratio** of an object: ``mask area / box area`` (pixels
of the mask over pixels of its xyxy box, in [0, 1]; :func:`labelloop.geometry.masks.rle_area`,
:func:`labelloop.geometry.boxes.area`), taken from the masks at hand:

- human masks: a resolved human label (``origin == "human"``) with a mask, over its own box;
- pre-label masks of reviewed boxes: a resolved human label without a mask whose source
  prediction (``prediction_id``) has a mask (SAM, SAM-HQ, SAM 2, SAM 3 or GrabCut), over that
  prediction's box; the reviewer kept the box, so the object is real.

Auto-accepted (unreviewed) model masks are not used: nobody checked that they cover an object.

Rule (per class, on the median fill of its masks; a class with fewer than :data:`MIN_MASKS`
masks keeps its level, "not enough masks"):

- median fill < :data:`FILL_MASK_BELOW` (0.5: more than half of the box is background) ->
  recommend ``mask``;
- median fill >= :data:`FILL_BOX_ABOVE` (pi/4 = 0.785, the fill of an ellipse inscribed in its
  box: an object at least as compact as an ellipse is described by its box about as well as by
  its outline) -> recommend ``box`` (masks add little);
- otherwise keep the configured level.

A ``tag`` category has no boxes and so no masks: it keeps ``tag``, and the report gives the cost
of boxes for it from its tagged images (one box per tagged image, a lower bound). The cost of the
next level is priced with ``cost:`` of ``labelloop.yaml``: ``tag -> box`` = objects x
``box_per_object``, ``box -> mask`` = objects x ``mask_per_object`` (objects = the class's resolved
labels). The recommendation never changes ``labelloop.yaml``.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Mapping, Sequence, TypedDict

from labelloop.geometry.boxes import area
from labelloop.geometry.masks import rle_area
from labelloop.tables.schemas import LabelRow, PredictionRow
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.layout import Workspace

#: Median mask-fill ratio below which boxes fit a class poorly and masks are recommended.
FILL_MASK_BELOW = 0.5
#: Median mask-fill ratio at or above which masks add little to boxes (pi/4, an inscribed ellipse).
FILL_BOX_ABOVE = math.pi / 4
#: Masks of a class needed before its level is judged.
MIN_MASKS = 5

NEXT_LEVEL = {"tag": "box", "box": "mask", "mask": None}


class LevelAdvice(TypedDict):
    """One class's level recommendation.

    ``fill_median``: median mask area / box area of its ``masks`` masks (None without masks);
    ``fill_sources``: how many came from human masks and from pre-label masks of reviewed boxes;
    ``objects``: its resolved labels (tagged images for a tag category); ``next_level`` and
    ``next_level_cost``: the level above the configured one and its price for those objects in
    ``currency`` (None at ``mask``); ``reason``: the rule that decided."""

    category: str
    level: str
    recommended: str
    fill_median: float | None
    masks: int
    fill_sources: dict[str, int]
    objects: int
    next_level: str | None
    next_level_cost: float | None
    currency: str
    reason: str


def fill_ratio(mask: str, bbox: Sequence[float]) -> float | None:
    """Mask-fill ratio of one object: ``rle_area(mask) / area(bbox)``, clipped to [0, 1].

    Args:
        mask: COCO RLE JSON (pixels of the EXIF-corrected image); bbox: its xyxy box in pixels.
    Returns None for a box of zero area (no ratio defined).
    Raises:
        ValueError: a malformed RLE (:func:`labelloop.geometry.masks.rle_area`).
    """
    box = area(bbox)
    if box <= 0:
        return None
    return min(1.0, rle_area(mask) / box)


def mask_fills(labels: Sequence[LabelRow], predictions: Mapping[str, PredictionRow]) -> dict[str, dict[str, list[float]]]:
    """Fill ratios per class from the masks at hand (module docstring): ``{category: {"human": [...],
    "prelabel": [...]}}``. ``predictions``: PREDICTIONS rows by prediction_id (any model's)."""
    out: dict[str, dict[str, list[float]]] = {}
    for lab in labels:
        if lab["origin"] != "human" or lab.get("iscrowd"):
            continue
        slot = out.setdefault(lab["category"], {"human": [], "prelabel": []})
        if lab.get("mask"):
            r = fill_ratio(str(lab["mask"]), lab["bbox"])
            if r is not None:
                slot["human"].append(r)
            continue
        pred = predictions.get(lab.get("prediction_id") or "")
        if pred is not None and pred.get("mask"):
            r = fill_ratio(str(pred["mask"]), pred["bbox"])
            if r is not None:
                slot["prelabel"].append(r)
    return out


def recommend_levels(cfg: ProjectConfig, labels: Sequence[LabelRow], predictions: Mapping[str, PredictionRow],
                     tagged_images: Mapping[str, int] | None = None) -> list[LevelAdvice]:
    """The level recommendation of every configured class, in ``labelloop.yaml`` order.

    Args:
        cfg: the project config (levels, ``cost:`` prices).
        labels: resolved LABELS rows; predictions: PREDICTIONS rows by prediction_id.
        tagged_images: ``{tag category: images resolved with that tag}`` (0 when absent).
    Returns one :class:`LevelAdvice` per category (rule and sources: module docstring).
    """
    fills = mask_fills(labels, predictions)
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab["category"]] = counts.get(lab["category"], 0) + 1
    price = {"box": cfg.cost.box_per_object, "mask": cfg.cost.mask_per_object}
    out: list[LevelAdvice] = []
    for c in cfg.categories:
        level = c.annotation_level
        src = fills.get(c.name, {"human": [], "prelabel": []})
        values = src["human"] + src["prelabel"]
        objects = (tagged_images or {}).get(c.name, 0) if level == "tag" else counts.get(c.name, 0)
        nxt = NEXT_LEVEL[level]
        fill = round(median(values), 4) if values else None
        if level == "tag":
            rec, reason = "tag", "a tag category has no boxes, so no masks to measure; box cost is one box per tagged image"
        elif fill is None or len(values) < MIN_MASKS:
            rec, reason = level, f"not enough masks ({len(values)} < {MIN_MASKS}) to judge; keep {level}"
        elif fill < FILL_MASK_BELOW:
            rec, reason = "mask", f"median fill {fill:.2f} < {FILL_MASK_BELOW}: boxes fit these objects poorly"
        elif fill >= FILL_BOX_ABOVE:
            rec, reason = "box", f"median fill {fill:.2f} >= {FILL_BOX_ABOVE:.3f} (pi/4): masks add little"
        else:
            rec, reason = level, f"median fill {fill:.2f} between {FILL_MASK_BELOW} and {FILL_BOX_ABOVE:.3f}: keep {level}"
        out.append(LevelAdvice(
            category=c.name, level=level, recommended=rec, fill_median=fill, masks=len(values),
            fill_sources={"human": len(src["human"]), "prelabel": len(src["prelabel"])}, objects=objects,
            next_level=nxt, next_level_cost=round(objects * price[nxt], 2) if nxt else None,
            currency=cfg.cost.currency, reason=reason))
    return out


def workspace_levels(ws: Workspace, model_id: str) -> list[LevelAdvice]:
    """:func:`recommend_levels` on a workspace: its resolved labels, the PREDICTIONS rows of
    ``model_id`` (the current pre-labeler) on every batch and the reviewers' current tags. Reads only; ``labelloop.yaml`` is never
    written. Raises :class:`labelloop.workspace.config.ConfigError` for a bad ``labelloop.yaml``."""
    labels, _ = repo.read_labels(ws)
    preds = {p["prediction_id"]: p for p in repo.current_predictions(ws, model_id)}
    cfg = ws.config()
    tagged = tag_counts(review_store(ws).current_tags()) if cfg.tag_categories else {}
    return recommend_levels(cfg, labels, preds, tagged_images=tagged)


def tag_counts(tags: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """``{tag category: images tagged with it}`` from ``image_id -> tags``
    (:meth:`labelloop.review.store.ReviewStore.current_tags`)."""
    out: dict[str, int] = {}
    for cats in tags.values():
        for c in set(cats):
            out[c] = out.get(c, 0) + 1
    return out
