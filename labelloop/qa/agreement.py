"""Inter-annotator agreement on double-reviewed images: Cohen's kappa per reviewer pair.

Which annotations count: every *current* annotation (the latest version of each
``(source, task, tool annotation)`` by ``updated_at``, not cancelled; see
:func:`current_annotations`), and per ``(annotator, image)`` the most recent of those. An
image is double-reviewed when two or more annotators have a current annotation of it.

Units of agreement (one per object): on each image both reviewers annotated, their boxes are
matched one to one, class-agnostic, greedily as COCO evaluation does (reviewer A's boxes by
descending area, each taking B's unmatched box of highest IoU >= ``min_iou``,
:func:`labelloop.geometry.boxes.greedy_match`). A matched pair gives ``(class_A, class_B)``; an
unmatched box gives ``(class, "missing")`` or ``("missing", class)``. Images where neither drew
a box give no unit (agreement on negatives is not counted).

Kappa: Cohen (1960), "A coefficient of agreement for nominal scales", Educational and
Psychological Measurement 20(1), computed with ``sklearn.metrics.cohen_kappa_score`` over the
units; interval: percentile bootstrap over units (:mod:`labelloop.qa.intervals`). Kappa is
*undefined* (reported with the reason, never 0 or NaN) when there is no double-reviewed image,
no unit, or only one class among all units (expected agreement 1, so 0/0).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from labelloop.geometry.boxes import area, greedy_match
from labelloop.qa.gates import gate_result
from labelloop.qa.intervals import (
    MIN_BOOTSTRAP_N,
    bootstrap_interval,
    gate_higher_is_better,
    multinomial_weights,
    scaled_sample_size,
    worst,
)
from labelloop.tables.schemas import HumanLabelRow, ReviewRow

MISSING = "missing"


def _ts(value) -> tuple:
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
        return (1, t.astimezone(dt.timezone.utc).isoformat())
    except ValueError:
        return (0, str(value or ""))


def current_annotations(reviews: Iterable[ReviewRow], human_labels: Iterable[HumanLabelRow]) -> list[dict]:
    """Per ``(annotator, image_id)``, the annotator's most recent current annotation.

    Args:
        reviews: REVIEWS rows (all versions, as :meth:`labelloop.review.store.ReviewStore.reviews` returns them).
        human_labels: HUMAN_LABELS rows (all versions; deletion markers are left out here).
    Returns:
        ``[{"review_id", "annotator", "image_id", "source", "updated_at", "labels": [rows]}]``
        sorted by image_id then annotator; ``labels`` are that review's label rows (category,
        bbox xyxy pixels, action, ...), an empty list for a labeled negative.
    """
    versions: dict[tuple, tuple[tuple, ReviewRow]] = {}
    for r in reviews:
        k: tuple = (r.get("source"), r.get("task_id"), r.get("tool_annotation_id"))
        key = (_ts(r.get("updated_at")), r.get("review_id") or "")
        if k not in versions or key > versions[k][0]:
            versions[k] = (key, r)
    per: dict[tuple, tuple] = {}
    for key, r in versions.values():
        if r.get("was_cancelled"):
            continue
        k = (r.get("annotator") or "unknown", r["image_id"])
        if k not in per or key > per[k][0]:
            per[k] = (key, r)
    wanted = {r["review_id"] for _, r in per.values()}
    labels: dict[str, list[HumanLabelRow]] = defaultdict(list)
    seen: set[tuple] = set()
    for h in human_labels:
        if h.get("review_id") in wanted and h.get("action") != "deleted":
            k = (h["review_id"], h.get("annotation_id"))
            if k not in seen:
                seen.add(k)
                labels[h["review_id"]].append(h)
    out = [{"review_id": r["review_id"], "annotator": ann, "image_id": image_id, "source": r.get("source"),
            "updated_at": r.get("updated_at"), "labels": sorted(labels.get(r["review_id"], []),
                                                                key=lambda h: h.get("annotation_id") or "")}
           for (ann, image_id), (_, r) in per.items()]
    return sorted(out, key=lambda a: (a["image_id"], a["annotator"]))


def match_objects(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], min_iou: float = 0.5
                  ) -> list[tuple[int | None, int | None, float]]:
    """Class-agnostic one-to-one matching of two label lists (dicts with ``bbox`` xyxy, ``category``).

    Returns ``(i, j, iou)`` for matched pairs, ``(i, None, 0.0)`` for unmatched ``a`` items and
    ``(None, j, 0.0)`` for unmatched ``b`` items, in that order. ``a`` is visited by descending
    box area (COCO visits detections by descending score; human boxes have no score).
    """
    pairs = greedy_match([x["bbox"] for x in a], [y["bbox"] for y in b], min_iou, same_class=False,
                         order_a=[area(x["bbox"]) for x in a]) if a and b else []
    ma, mb = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    out: list[tuple[int | None, int | None, float]] = [(i, j, v) for i, j, v in sorted(pairs)]
    out += [(i, None, 0.0) for i in range(len(a)) if i not in ma]
    out += [(None, j, 0.0) for j in range(len(b)) if j not in mb]
    return out


def agreement_units(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], min_iou: float = 0.5
                    ) -> list[tuple[str, str, float]]:
    """``(class_A, class_B, iou)`` per object of one image (``"missing"`` for an unmatched box)."""
    return [(a[i]["category"] if i is not None else MISSING, b[j]["category"] if j is not None else MISSING, v)
            for i, j, v in match_objects(a, b, min_iou)]


def kappa_from_counts(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices ``counts`` of shape ``(..., K, K)`` (rows: rater A,
    columns: rater B): ``(p_o - p_e) / (1 - p_e)``; NaN where ``p_e == 1`` or a matrix is empty."""
    c = np.asarray(counts, dtype=float)
    n = c.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(c, axis1=-2, axis2=-1) / n
        pe = (c.sum(axis=-1) * c.sum(axis=-2)).sum(axis=-1) / n**2
        k = (po - pe) / (1.0 - pe)
    return np.where((n > 0) & (pe < 1.0 - 1e-12), k, np.nan)


def kappa_with_interval(labels_a: list[str], labels_b: list[str], confidence: float = 0.95,
                        resamples: int = 2000, seed: int = 0) -> dict:
    """Cohen's kappa of two label sequences (sklearn) with a bootstrap interval over units.

    Returns ``{"kappa", "ci_low", "ci_high", "se", "n_units", "observed_agreement", "undefined"}``;
    ``undefined`` is ``None`` or the reason, in which case kappa and its interval are ``None``.
    """
    n = len(labels_a)
    base: dict[str, Any] = {"kappa": None, "ci_low": None, "ci_high": None, "se": None, "n_units": n,
                            "observed_agreement": None, "undefined": None}
    if n == 0:
        return base | {"undefined": "no objects on the images both reviewers annotated"}
    classes = sorted(set(labels_a) | set(labels_b))
    base["observed_agreement"] = sum(x == y for x, y in zip(labels_a, labels_b)) / n
    if len(classes) == 1:
        return base | {"undefined": f"only one class ({classes[0]!r}) among {n} objects: expected agreement is 1, "
                                    "so kappa is 0/0"}
    from sklearn.metrics import cohen_kappa_score  # heavy (about a second): only when kappa is computed

    kappa = float(cohen_kappa_score(labels_a, labels_b, labels=classes))
    idx = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    codes = np.array([idx[x] * k + idx[y] for x, y in zip(labels_a, labels_b)])
    onehot = np.zeros((n, k * k))
    onehot[np.arange(n), codes] = 1.0

    def stat(w: np.ndarray) -> np.ndarray:
        return kappa_from_counts((w @ onehot).reshape(-1, k, k))

    boot = stat(multinomial_weights(n, resamples, seed))
    boot = boot[np.isfinite(boot)]
    ci = bootstrap_interval(stat, n, confidence, resamples, seed)
    return base | {"kappa": kappa, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                   "se": float(np.std(boot, ddof=1)) if boot.size > 1 else None}


def pairwise_agreement(annotations: list[dict], min_iou: float = 0.5, confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> dict:
    """Kappa per reviewer pair, pooled kappa, and per-image agreement of double-reviewed images.

    Args:
        annotations: :func:`current_annotations` output.
    The value returned:

        ``{"double_reviewed_images", "pairs": [{"annotators": [a, b], "images", "kappa", "ci_low",
        "ci_high", "se", "n_units", "observed_agreement", "undefined", "confusion": {a_cls: {b_cls: n}}}],
        "pooled": {...same keys...}, "images": [{"image_id", "annotators", "agreement",
        "mean_iou", "n_units"}]}``; per-image ``agreement`` is the share of units with equal
        classes, ``mean_iou`` the mean IoU over units (0 for an unmatched box), both ``None`` on
        an image with no box from either reviewer.
    """
    by_image: dict[str, dict[str, dict]] = defaultdict(dict)
    for a in annotations:
        by_image[a["image_id"]][a["annotator"]] = a
    doubles = {i: d for i, d in by_image.items() if len(d) >= 2}
    per_pair: dict[tuple[str, str], list[tuple[str, str, float]]] = defaultdict(list)
    pair_images: dict[tuple[str, str], list[str]] = defaultdict(list)
    images = []
    for image_id in sorted(doubles):
        d = doubles[image_id]
        all_units = []
        for x, y in itertools.combinations(sorted(d), 2):
            units = agreement_units(d[x]["labels"], d[y]["labels"], min_iou)
            per_pair[(x, y)].extend(units)
            pair_images[(x, y)].append(image_id)
            all_units.extend(units)
        n = len(all_units)
        images.append({"image_id": image_id, "annotators": sorted(d), "n_units": n,
                       "agreement": sum(u[0] == u[1] for u in all_units) / n if n else None,
                       "mean_iou": sum(u[2] for u in all_units) / n if n else None})
    pairs = []
    for (x, y) in sorted(per_pair):
        units = per_pair[(x, y)]
        res = kappa_with_interval([u[0] for u in units], [u[1] for u in units], confidence, resamples, seed)
        pairs.append({"annotators": [x, y], "images": len(pair_images[(x, y)]), **res,
                      "confusion": _confusion(units)})
    pooled_units = [u for (x, y) in sorted(per_pair) for u in per_pair[(x, y)]]
    pooled = kappa_with_interval([u[0] for u in pooled_units], [u[1] for u in pooled_units], confidence,
                                 resamples, seed)
    if not doubles:
        pooled["undefined"] = "no image was reviewed by two annotators"
    return {"double_reviewed_images": len(doubles), "pairs": pairs, "pooled": pooled | {"confusion": _confusion(pooled_units)},
            "images": images}


def _confusion(units: list[tuple[str, str, float]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a, b, _ in units:
        out[a][b] += 1
    return {a: dict(sorted(row.items())) for a, row in sorted(out.items())}


def kappa_gates(agreement: dict, threshold: float = 0.8, guidelines: float = 0.6,
                confidence: float = 0.95) -> tuple[dict, dict]:
    """The blocking ``inter_annotator_kappa`` gate and the non-blocking ``guidelines_agreement`` flag.

    Each measured pair is judged by its interval (:func:`labelloop.qa.intervals.gate_higher_is_better`,
    at least :data:`~labelloop.qa.intervals.MIN_BOOTSTRAP_N` objects); the gate takes the worst pair.
    Undefined pairs are listed but not judged; no measured pair gives ``not_measured``. The
    guidelines flag warns when a pair's (or the pooled) kappa is below ``guidelines``.
    """
    verdicts, reasons, images = [], [], []
    low_pairs = []
    for p in agreement.get("pairs", []):
        who = " vs ".join(p["annotators"])
        if p["kappa"] is None:
            reasons.append(f"{who}: undefined ({p['undefined']})")
            continue
        needed = scaled_sample_size(p["n_units"], p["kappa"], p["ci_low"], p["ci_high"], threshold)
        status, why = gate_higher_is_better(p["kappa"], (p["ci_low"], p["ci_high"]), threshold, p["n_units"],
                                            what=f"kappa {who}", unit="objects", needed=needed,
                                            min_n=MIN_BOOTSTRAP_N, confidence=confidence)
        verdicts.append(status)
        reasons.append(why if status != "fail" else "\0" + why)  # failing pairs first
        if p["kappa"] < guidelines:
            low_pairs.append(f"{who} kappa {p['kappa']:.3f}")
    reasons = [r[1:] for r in reasons if r.startswith("\0")] + [r for r in reasons if not r.startswith("\0")]
    measured = [p for p in agreement.get("pairs", []) if p["kappa"] is not None]
    status = worst(verdicts) if verdicts else "not_measured"
    if not agreement.get("pairs"):
        reasons = [agreement.get("pooled", {}).get("undefined") or "no image was reviewed by two annotators"]
    bad_pairs = {tuple(p["annotators"]) for p in measured if p["ci_high"] is not None and p["ci_high"] < threshold}
    for im in agreement.get("images", []):
        if any(tuple(pr) in bad_pairs for pr in itertools.combinations(im["annotators"], 2)) and \
                (im["agreement"] is None or im["agreement"] < 1.0):
            images.append(im["image_id"])
    pooled = agreement.get("pooled", {})
    gate = gate_result("inter_annotator_kappa", status, pooled.get("kappa"), threshold, "; ".join(reasons), images)
    if pooled.get("kappa") is not None and pooled["kappa"] < guidelines:
        low_pairs.append(f"pooled kappa {pooled['kappa']:.3f}")
    if low_pairs:
        flag = gate_result("guidelines_agreement", "warn", pooled.get("kappa"), guidelines,
                           f"kappa below {guidelines:g} ({'; '.join(low_pairs)}): reviewers read the labeling "
                           "guidelines differently; review the guidelines and the confused classes",
                           [im["image_id"] for im in agreement.get("images", [])
                            if im["agreement"] is not None and im["agreement"] < 1.0])
    else:
        flag = gate_result("guidelines_agreement", "pass" if measured else "not_measured", pooled.get("kappa"),
                           guidelines, f"every measured kappa is at or above {guidelines:g}" if measured
                           else "not measured: no reviewer pair with a defined kappa")
    return gate, flag
