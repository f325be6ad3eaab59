"""The release's error rate: the share of the released images whose labels are wrong, estimated
by stratum of how each image was resolved, with a 95% interval (the ``release_error_rate`` gate).

Strata (Cochran, W. G., *Sampling Techniques*, 3rd ed., Wiley 1977, ch. 5, stratified random
sampling of a proportion):

- one stratum per model whose auto-accepted, unreviewed labels the release carries: weight
  ``w_m = N_m / N`` (images of the release resolved ``auto_accepted`` with that model's labels),
  rate ``p_m = k_m / n_m``, the audited error rate of that model's QA sample
  (:func:`labelloop.qa.metrics.audit` on the images auto-accepted by that model when they were
  routed), with its Wilson interval ``(l_m, u_m)``;
- the reviewed stratum: weight ``w_R = N_R / N`` (images resolved ``reviewed``), rate
  ``p_R = k_R / n_R``, the reviewers' image-level error on gold images (:func:`reviewer_gold_errors`:
  one unit per reviewer and gold image; an error is a gold object missed, an extra box, a wrong
  class, or IoU below ``audit_move_iou``, the audit's own rule), with its Wilson interval. With no
  gold image reviewed, ``p_R`` is not measured: its terms are 0 and the report says so.

Estimate ``sum_s w_s p_s``; interval by MOVER-Wilson (method of variance estimates recovery,
Zou, G. Y. & Donner, A. (2008), "Construction of confidence limits about effect measures: a general
approach", Statistics in Medicine 27(10):1693-1702), combining the per-stratum Wilson (1927)
limits :func:`labelloop.qa.intervals.wilson_interval`::

    L = est - sqrt(sum_s (w_s (p_s - l_s))^2)
    U = est + sqrt(sum_s (w_s (u_s - p_s))^2)

With one non-empty stratum of weight 1 it is that stratum's Wilson interval. Gate (the interval
rule of :mod:`labelloop.qa.intervals`): ``fail`` when ``L > target``, ``pass`` when
``U < target``, ``warn`` otherwise, naming what would settle it (the audit size, or the gold
images, at which ``U`` would drop below the target with the rates observed).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

from labelloop.qa.agreement import match_objects
from labelloop.qa.gates import gate_result
from labelloop.qa.intervals import wilson_interval
from labelloop.tables.schemas import GoldLabelRow, LabelRow, ResolvedImageRow

#: Any overlap pairs a reviewer's box with a gold box (the IoU rule then judges the pair).
ANY_OVERLAP = 1e-9
#: Largest sample size the "what would settle it" search tries.
MAX_NEEDED = 100_000
#: Name of the reviewed stratum in reports.
REVIEWED = "reviewed"


def reviewer_gold_errors(gold_labels: Sequence[GoldLabelRow], gold_image_ids: Sequence[str],
                         annotations: Sequence[Mapping[str, Any]], move_iou: float = 0.75) -> dict:
    """The reviewers' image-level error on gold images (``p_R = k / n``).

    Args:
        gold_labels: GOLD_LABELS rows (category, bbox xyxy pixels); gold_image_ids: every gold
            image (one without gold labels is a trusted negative);
        annotations: :func:`labelloop.qa.agreement.current_annotations` (one per reviewer and image).
        move_iou: a matched box below this IoU with its gold box is an error (``qa.audit_move_iou``).
    Returns:
        ``{"n": units, "k": units in error, "errors": {"<annotator> <image_id>": [reason, ...]}}``;
        one unit per (reviewer, gold image) annotation. Boxes are matched one to one, class-agnostic,
        greedily by IoU (:func:`labelloop.qa.agreement.match_objects`, any overlap).
    """
    gold_ids = set(gold_image_ids)
    by_image: dict[str, list[GoldLabelRow]] = defaultdict(list)
    for g in gold_labels:
        by_image[g["image_id"]].append(g)
    n, errors = 0, {}
    for a in sorted(annotations, key=lambda a: (a["image_id"], a["annotator"])):
        if a["image_id"] not in gold_ids:
            continue
        n += 1
        labels, gold = list(a["labels"]), by_image.get(a["image_id"], [])
        errs = []
        for i, j, v in match_objects(labels, gold, ANY_OVERLAP):
            if i is None:
                errs.append(f"missed {gold[j]['category']}")  # type: ignore[index]
            elif j is None:
                errs.append(f"extra {labels[i]['category']}")
            elif labels[i]["category"] != gold[j]["category"]:
                errs.append(f"class {labels[i]['category']} where gold says {gold[j]['category']}")
            elif v < move_iou:
                errs.append(f"{gold[j]['category']} box at IoU {v:.2f}")
        if errs:
            errors[f"{a['annotator']} {a['image_id']}"] = errs
    return {"n": n, "k": len(errors), "errors": errors}


def mover_wilson(strata: Sequence[tuple[float, int, int]], confidence: float = 0.95) -> tuple[float, float, float]:
    """Stratified estimate ``sum w p`` of ``strata`` ``[(w, k, n), ...]`` (``p = k / n``, 0 when
    ``n == 0``, whose Wilson interval is then ``[0, 1]``) and its MOVER-Wilson interval
    (Zou & Donner 2008; the formula is in this module's docstring), clipped to [0, 1].

    Returns ``(estimate, low, high)``.
    """
    est, lo2, hi2 = 0.0, 0.0, 0.0
    for w, k, n in strata:
        p = k / n if n else 0.0
        low, high = wilson_interval(k, n, confidence)
        est += w * p
        lo2 += (w * (p - low)) ** 2
        hi2 += (w * (high - p)) ** 2
    return est, max(0.0, est - math.sqrt(lo2)), min(1.0, est + math.sqrt(hi2))


def _needed(strata: list[tuple[float, int, int]], s: int, target: float, confidence: float) -> int | None:
    """Smallest sample size of stratum ``s`` (its observed rate kept, ``k = round(p n)``) at which
    ``U`` drops below ``target``, the other strata unchanged; ``None`` when none up to
    :data:`MAX_NEEDED` does."""
    w, k, n = strata[s]
    p = k / n if n else 0.0

    def passes(m: int) -> bool:
        trial = list(strata)
        trial[s] = (w, round(p * m), m)
        return mover_wilson(trial, confidence)[2] < target

    lo, hi = n, max(1, 2 * n)
    while not passes(hi):
        if hi >= MAX_NEEDED:
            return None
        lo, hi = hi, min(2 * hi, MAX_NEEDED)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi


def image_models(labels: Sequence[LabelRow], resolved: Sequence[ResolvedImageRow], default_model: str | None
                 ) -> tuple[dict[str, int], int, int]:
    """Counts of the release's images by how they were resolved: ``({model_id: N_m}, N_R, N)``.

    An image resolved ``auto_accepted`` counts for the model whose labels it carries (the
    ``model_id`` of its auto-accepted label rows; ``default_model`` for an auto-accepted image with
    no label); every other resolution (``reviewed``) counts in ``N_R``."""
    model_of: dict[str, str] = {}
    for lab in labels:
        if lab.get("action") == "auto_accepted" and lab.get("model_id"):
            model_of.setdefault(lab["image_id"], str(lab["model_id"]))
    per_model: dict[str, int] = defaultdict(int)
    n_r = 0
    ids = {r["image_id"]: r.get("resolution") for r in resolved}
    for image_id, resolution in ids.items():
        if resolution == "auto_accepted":
            per_model[model_of.get(image_id) or str(default_model)] += 1
        else:
            n_r += 1
    return dict(sorted(per_model.items())), n_r, len(ids)


def release_error_rate(images_per_model: Mapping[str, int], n_reviewed: int, n_images: int,
                       audits: Mapping[str, tuple[int, int]], reviewer: tuple[int, int] | None,
                       target: float = 0.02, confidence: float = 0.95) -> dict:
    """The ``release_error_rate`` figure and its gate status.

    Args:
        images_per_model: ``{model_id: N_m}``, the release's auto-accepted, unreviewed images by
            the model whose labels they carry; n_reviewed: ``N_R``; n_images: ``N`` (images).
        audits: ``{model_id: (k, n)}``, errors and audited images of each model's QA sample.
        reviewer: ``(k_R, n_R)`` from :func:`reviewer_gold_errors`, or ``None`` when no gold
            image was reviewed (the reviewed stratum's terms are then 0, reported as not measured,
            and the gate cannot pass: an interval below the target warns instead).
        target: the ``qa.audit_error_target`` share of wrong images (0.02).
    Returns:
        ``{"estimate", "ci_low", "ci_high", "target", "confidence", "status", "reason",
        "strata": [{"stratum", "weight", "images", "k", "n", "rate", "ci_low", "ci_high",
        "needed"}], "reviewers_measured": bool}``; status ``not_measured`` for an empty release.
    """
    pct = f"{confidence * 100:g}%"
    if n_images <= 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "target": target, "confidence": confidence,
                "status": "not_measured", "reason": "no resolved image: nothing to estimate", "strata": [],
                "reviewers_measured": reviewer is not None}
    names: list[str] = []
    strata: list[tuple[float, int, int]] = []
    for model, n_m in sorted(images_per_model.items()):
        if n_m:
            k, n = audits.get(model, (0, 0))
            names.append(model)
            strata.append((n_m / n_images, k, n))
    if n_reviewed and reviewer is not None:
        names.append(REVIEWED)
        strata.append((n_reviewed / n_images, reviewer[0], reviewer[1]))
    est, low, high = mover_wilson(strata, confidence)
    rows: list[dict[str, Any]] = []
    for name, (w, k, n) in zip(names, strata):
        lo, hi = wilson_interval(k, n, confidence)
        rows.append({"stratum": name, "weight": w, "images": round(w * n_images), "k": k, "n": n,
                     "rate": k / n if n else None, "ci_low": lo, "ci_high": hi, "needed": None})
    notes = []
    no_audit = [r["stratum"] for r in rows if r["stratum"] != REVIEWED and r["n"] == 0]
    if no_audit:
        notes.append("no audit yet of model " + ", ".join(no_audit) + " (no QA-sample image it auto-accepted "
                     "has been reviewed)")
    if n_reviewed and reviewer is None:
        notes.append(f"the reviewers' error is not measured (no gold image reviewed): the {n_reviewed} reviewed "
                     "images count as correct")
    head = (f"estimate {est:.3f}, {pct} interval [{low:.3f}, {high:.3f}] (MOVER-Wilson over "
            + (", ".join(f"{r['stratum'] if r['stratum'] == REVIEWED else 'auto-accepted by ' + r['stratum']}: "
                        f"{r['images']} images, {r['k']}/{r['n']} in error" for r in rows) or "no measured stratum") + ")")
    if low > target:
        status, reason = "fail", f"{head} lies above the {target:g} target"
    elif high < target and n_reviewed and reviewer is None:
        # the reviewed stratum's terms are 0 only because nothing measured them: no pass on that
        status = "warn"
        reason = (f"{head} lies below the {target:g} target, but the reviewers' error is not measured; it would be "
                  "settled by a gold set (`labelloop register-gold FILE`) reviewed like the other images")
    elif high < target:
        status, reason = "pass", f"{head} lies below the {target:g} target"
    else:
        status, reason = "warn", f"{head} straddles the {target:g} target"
        hints = []
        for s, r in enumerate(rows):
            r["needed"] = _needed(strata, s, target, confidence)
            if r["needed"] is not None and r["stratum"] != REVIEWED and r["needed"] > r["images"]:
                # a model's audit cannot exceed the images it auto-accepted here
                hints.append(f"reviewing the {r['images']} images auto-accepted by model {r['stratum']} (an audit "
                             f"would need about {r['needed']}, more than it auto-accepted)")
            elif r["needed"] is not None:
                unit = ("reviewer annotations of gold images" if r["stratum"] == REVIEWED
                        else f"audited images of model {r['stratum']}")
                rate = "no errors" if not r["k"] else f"the observed {r['rate']:.3f} error rate"
                hints.append(f"about {r['needed']} {unit} with {rate}")
        if hints:
            reason += "; it would be settled by " + " or ".join(hints)
        elif est >= target:
            reason += "; the estimate itself is not below the target, so more audits or gold images cannot pass"
        else:
            reason += "; no single stratum's sample can settle it: audit more and review more gold images"
    if notes:
        reason += "; " + "; ".join(notes)
    return {"estimate": est, "ci_low": low, "ci_high": high, "target": target, "confidence": confidence,
            "status": status, "reason": reason, "strata": rows, "reviewers_measured": reviewer is not None}


def release_error_gate(figure: Mapping[str, Any], images: Sequence[str] = ()) -> dict:
    """The ``release_error_rate`` gate result (:func:`labelloop.qa.gates.gate_result`) of a
    :func:`release_error_rate` figure, with ``interval: [L, U]``."""
    interval = None if figure["ci_low"] is None else [figure["ci_low"], figure["ci_high"]]
    return gate_result("release_error_rate", figure["status"], figure["estimate"], figure["target"], figure["reason"],
                       list(images), interval=interval)
