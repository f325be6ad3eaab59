"""COCO AP of a detector on a release split, and the paired bootstrap that decides a promotion.

- :func:`predict` runs an RT-DETRv2 checkpoint over a split's images and returns COCO result rows
  (``{"image_id", "category_id", "bbox" (xywh pixels), "score"}``, the format of
  ``COCO.loadRes``).
- :func:`coco_ap` evaluates result rows against the split's COCO file with pycocotools'
  ``COCOeval(iouType="bbox")``: ``AP`` (IoU 0.50:0.95, area all, 100 detections: ``stats[0]``),
  ``AP50`` (``stats[1]``) and the per-class AP (the mean of ``eval["precision"][:, :, k, 0, -1]``
  over entries > -1, as ``summarize`` does for all classes). The per-image matches are kept
  (:class:`Evaluation`) so that the bootstrap recomputes AP on resampled images without matching
  again.
- :func:`paired_bootstrap` resamples the images (with replacement, the same resample for both
  models: a paired bootstrap, Efron & Tibshirani 1993, ch. 16) and returns the percentile 95%
  interval of AP(candidate) - AP(current). :func:`resampled_ap` is ``COCOeval.accumulate`` +
  ``summarize``'s ``stats[0]`` (101-point interpolated precision, the same sort, the same ignore
  rules) over a multiset of images; with every image once it equals ``stats[0]`` exactly.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.training.data import SplitData


class EvaluationError(ValueError):
    """A split cannot be evaluated or a promotion decided: too few images, no ground truth."""


@dataclass
class Evaluation:
    """pycocotools' results of one model on one split: ``AP``, ``AP50``, ``per_class`` AP by
    category name (None for a class with no ground truth), the evaluated COCO ``image_ids`` and
    ``per_image``: ``{(category index, coco image id): evalImgs entry}`` (area all), for
    :func:`resampled_ap`."""

    AP: float
    AP50: float
    per_class: dict[str, float | None]
    image_ids: list[int]
    categories: list[str]
    per_image: dict[tuple[int, int], dict] = field(default_factory=dict, repr=False)
    iou_thresholds: Any = field(default=None, repr=False)
    rec_thresholds: Any = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """``{"AP", "AP50", "per_class", "images"}`` (JSON-ready, for the model card)."""
        return {"AP": self.AP, "AP50": self.AP50, "per_class": self.per_class, "images": len(self.image_ids)}


def predict(model_dir: str | os.PathLike | Any, split: SplitData, image_size: int, batch_size: int = 8,
            device: str = "cpu", score_threshold: float = 0.05, max_detections: int = 100) -> list[dict]:
    """COCO result rows of an RT-DETRv2 model over every image of ``split``.

    Args:
        model_dir: a ``save_pretrained`` directory or a loaded model (its ``id2label`` must be the
            split's categories in order).
        split: :func:`labelloop.training.data.read_split`.
        image_size, batch_size, device, score_threshold, max_detections: as in ``training:``.

    Returns:
        ``[{"image_id": int, "category_id": int, "bbox": [x, y, w, h] pixels, "score": float}]``.
    """
    import torch

    from labelloop.training.detector import load_rgb, pixel_values, postprocess

    if isinstance(model_dir, (str, os.PathLike)):
        from transformers import RTDetrV2ForObjectDetection

        model = RTDetrV2ForObjectDetection.from_pretrained(Path(model_dir))
    else:
        model = model_dir
    model = model.to(device).eval()  # type: ignore[arg-type]
    cat_ids = [c["id"] for c in sorted(split.coco["categories"], key=lambda c: c["id"])]
    rows: list[dict] = []
    for i in range(0, len(split.examples), batch_size):
        batch = split.examples[i:i + batch_size]
        with torch.inference_mode():
            out = model(pixel_values=pixel_values([load_rgb(e.file) for e in batch], image_size).to(device))
        dets = postprocess(out.logits, out.pred_boxes, [(e.width, e.height) for e in batch], score_threshold,
                           max_detections)
        for e, per in zip(batch, dets):
            for k, score, (x0, y0, x1, y1) in per:
                rows.append({"image_id": e.coco_id, "category_id": cat_ids[k], "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "score": score})
    return rows


def coco_ap(split: SplitData, results: Sequence[dict]) -> Evaluation:
    """pycocotools ``COCOeval`` (bbox) of ``results`` against ``split``'s COCO file (module docstring).

    Raises:
        EvaluationError: the split has no image or no (non-crowd) ground-truth box.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not split.examples or not any(e.bboxes for e in split.examples):
        raise EvaluationError(f"{split.source}: no ground-truth box to evaluate against")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {k: v for k, v in split.coco.items()}
        gt.dataset.setdefault("info", {})
        gt.createIndex()
        dt = gt.loadRes(list(results)) if results else COCO()
        if not results:
            dt.dataset = {"images": split.coco["images"], "categories": split.coco["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    cats = sorted(split.coco["categories"], key=lambda c: c["id"])
    per_class: dict[str, float | None] = {}
    for k, c in enumerate(cats):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_class[c["name"]] = float(p[p > -1].mean()) if (p > -1).any() else None
    n_img, n_area = len(ev.params.imgIds), len(ev.params.areaRng)
    per_image = {}
    for k in range(len(cats)):
        for i, img in enumerate(ev.params.imgIds):
            e = ev.evalImgs[k * n_area * n_img + i]  # area index 0 = all
            if e is not None:
                per_image[(k, img)] = e
    return Evaluation(AP=max(float(ev.stats[0]), 0.0), AP50=max(float(ev.stats[1]), 0.0), per_class=per_class,
                      image_ids=list(ev.params.imgIds), categories=[c["name"] for c in cats], per_image=per_image,
                      iou_thresholds=ev.params.iouThrs, rec_thresholds=ev.params.recThrs)


def resampled_ap(ev: Evaluation, image_ids: Sequence[int], max_det: int = 100) -> float:
    """AP (IoU 0.50:0.95) over the multiset ``image_ids`` (an image drawn twice counts twice), from
    the per-image matches of ``ev`` (``COCOeval.accumulate``'s algorithm; module docstring).
    0.0 when no class has a ground-truth box among the images."""
    rec = ev.rec_thresholds
    aps: list[np.ndarray] = []
    for k in range(len(ev.categories)):
        entries = [ev.per_image[(k, i)] for i in image_ids if (k, i) in ev.per_image]
        if not entries:
            continue
        gt_ig = np.concatenate([e["gtIgnore"] for e in entries])
        npig = int(np.count_nonzero(gt_ig == 0))
        if npig == 0:
            continue
        scores = np.concatenate([e["dtScores"][0:max_det] for e in entries])
        inds = np.argsort(-scores, kind="mergesort")
        dtm = np.concatenate([e["dtMatches"][:, 0:max_det] for e in entries], axis=1)[:, inds]
        dtig = np.concatenate([e["dtIgnore"][:, 0:max_det] for e in entries], axis=1)[:, inds]
        tps = np.cumsum(np.logical_and(dtm, np.logical_not(dtig)), axis=1).astype(float)
        fps = np.cumsum(np.logical_and(np.logical_not(dtm), np.logical_not(dtig)), axis=1).astype(float)
        prec = np.zeros((len(ev.iou_thresholds), len(rec)))
        for t in range(len(ev.iou_thresholds)):
            tp, fp = tps[t], fps[t]
            if not len(tp):
                continue
            rc = tp / npig
            pr = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[::-1])[::-1]
            idx = np.searchsorted(rc, rec, side="left")
            ok = idx < len(pr)
            prec[t, ok] = pr[idx[ok]]
        aps.append(prec)
    return float(np.mean(aps)) if aps else 0.0


@dataclass(frozen=True)
class BootstrapResult:
    """``difference`` = AP(candidate) - AP(current) on all images, its percentile 95% interval
    ``low``..``high`` over ``resamples`` paired resamples of the ``images``."""

    difference: float
    low: float
    high: float
    resamples: int
    images: int

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {"difference": self.difference, "low": self.low, "high": self.high, "resamples": self.resamples,
                "images": self.images}


def paired_bootstrap(candidate: Evaluation, current: Evaluation, resamples: int = 1000, seed: int = 0,
                     min_images: int = 20) -> BootstrapResult:
    """Paired bootstrap of AP(candidate) - AP(current) over the images both were evaluated on.

    Raises:
        EvaluationError: the two evaluations cover different images, or fewer than ``min_images``
            (the message says how many are needed and how many there are).
    """
    if sorted(candidate.image_ids) != sorted(current.image_ids):
        raise EvaluationError("the candidate and the current model were evaluated on different images")
    ids = sorted(candidate.image_ids)
    if len(ids) < min_images:
        raise EvaluationError(f"{len(ids)} reviewed test image(s); a promotion needs at least {min_images} "
                              f"(training.min_test_images): review {min_images - len(ids)} more and release again")
    rng = np.random.default_rng(seed)
    arr = np.asarray(ids)
    diffs = np.empty(resamples)
    for r in range(resamples):
        draw = arr[rng.integers(0, len(arr), len(arr))].tolist()
        diffs[r] = resampled_ap(candidate, draw) - resampled_ap(current, draw)
    point = resampled_ap(candidate, ids) - resampled_ap(current, ids)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return BootstrapResult(difference=float(point), low=float(low), high=float(high), resamples=resamples,
                           images=len(ids))


def prelabeler_results(model: Any, split: SplitData) -> list[dict]:
    """COCO result rows of any pre-labeler (the :class:`labelloop.prelabel.protocol.PreLabeler`
    protocol: ``predict([RGB image]) -> [[Detection]]``, bbox xyxy pixels, category names) on
    every image of ``split``, so the current pre-labeler, whatever its backend, is measured on
    the same images as a candidate. Detections of a category not in the split are left out.

    Returns:
        ``[{"image_id", "category_id", "bbox" (xywh pixels), "score"}]`` (``COCO.loadRes`` rows).
    """
    from labelloop.training.detector import load_rgb

    ids = {c["name"]: c["id"] for c in split.coco["categories"]}
    rows: list[dict] = []
    for e in split.examples:
        for d in model.predict([load_rgb(e.file)])[0]:
            if d.category in ids:
                x0, y0, x1, y1 = d.bbox
                rows.append({"image_id": e.coco_id, "category_id": ids[d.category],
                             "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(d.score)})
    return rows
