"""QA of the label set: audited error rate, pre-label quality, schema checks and the gates.

Sources of the formulas:

- Binomial confidence interval: Wilson (1927) score interval (:func:`labelloop.qa.intervals.wilson_interval`).
- Detection matching: COCO evaluation (pycocotools ``COCOeval.evaluateImg``) visits detections
  by descending score; each takes the unmatched ground truth of its class with the highest
  IoU at or above the threshold (:func:`labelloop.geometry.boxes.greedy_match`).
- The audited error rate of the pre-labeler (per model, :func:`audits_by_model`) is a figure of the
  report, not a gate: the release's own error rate (:mod:`labelloop.qa.release_error`) decides
  the release.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Collection, Iterable, Mapping, Sequence, cast

from labelloop.geometry.boxes import box_problem, greedy_match, iou
from labelloop.qa.gates import gate_result
from labelloop.qa.intervals import sample_size_needed, wilson_interval
from labelloop.qa.release_error import image_models, release_error_gate, release_error_rate
from labelloop.tables.schemas import HumanLabelRow, LabelRow, PredictionRow, ResolvedImageRow, ReviewQueueRow, ReviewRow

ROUTES = ("auto_accept", "qa_sample", "human_review")
MAX_PROBLEMS = 50


def _metric_row(tp: int, n_pred: int, n_true: int, ious: list[float]) -> dict:
    return {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp, "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_true if n_true else None, "mean_iou": sum(ious) / len(ious) if ious else None}


def detection_metrics(
    predictions: Sequence[Mapping[str, Any]], truths: Sequence[Mapping[str, Any]],
    iou_thresholds: Sequence[float] = (0.5, 0.75)
) -> dict:
    """Pre-labels (``predictions``: image_id, category, bbox, score) against human labels
    (``truths``: image_id, category, bbox), COCO-style greedy one-to-one matching per image and
    class at each IoU threshold.

    Returns ``{"overall": {"iou@0.5": row, ...}, "per_class": {category: {"iou@0.5": row}}}``
    with ``row = {tp, fp, fn, precision, recall, mean_iou}``; precision/recall/mean_iou are
    ``None`` when undefined (no prediction / no truth / no match), never NaN.
    """
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for p in predictions:
        groups[(p["image_id"], p["category"])][0].append(p)
    for t in truths:
        groups[(t["image_id"], t["category"])][1].append(t)
    categories = sorted({cat for _, cat in groups})
    out: dict = {"overall": {}, "per_class": {c: {} for c in categories}}
    for thr in iou_thresholds:
        key = f"iou@{thr:g}"
        acc: dict[str, list[Any]] = {c: [0, 0, 0, []] for c in categories}  # tp, n_pred, n_true, ious
        for (_, cat), (preds, trues) in sorted(groups.items()):
            pairs = greedy_match(
                [p["bbox"] for p in preds], [t["bbox"] for t in trues], thr,
                [p["category"] for p in preds], [t["category"] for t in trues], same_class=True,
                order_a=[float(p.get("score") or 0.0) for p in preds],
            ) if preds and trues else []
            a = acc[cat]
            a[0], a[1], a[2] = a[0] + len(pairs), a[1] + len(preds), a[2] + len(trues)
            a[3].extend(v for _, _, v in pairs)
        for c in categories:
            out["per_class"][c][key] = _metric_row(*acc[c])
        tot = [sum(acc[c][i] for c in categories) for i in range(3)]
        out["overall"][key] = _metric_row(tot[0], tot[1], tot[2], [v for c in categories for v in acc[c][3]])
    return out


def _latest_per_route(review_queue: Iterable[ReviewQueueRow]) -> dict[str, ReviewQueueRow]:
    """The last queue row per image (a re-routed image keeps its newest routing)."""
    return {r["image_id"]: r for r in review_queue}


def latest_reviews(reviews: Iterable[ReviewRow], image_ids: Iterable[str] | None = None) -> dict[str, ReviewRow]:
    """The latest non-cancelled review per image (highest ``updated_at``, then ``review_id``).

    A cancelled (skipped) review never counts as a review of the image.
    """
    wanted = None if image_ids is None else set(image_ids)
    keep = [r for r in reviews if not r.get("was_cancelled") and (wanted is None or r["image_id"] in wanted)]
    keep.sort(key=lambda r: (r.get("updated_at") or "", r.get("review_id") or ""))
    return {r["image_id"]: r for r in keep}  # the last one per image wins


def _rows_of_review(human_labels: Iterable[HumanLabelRow], latest: dict[str, ReviewRow]
                    ) -> dict[str, list[HumanLabelRow]]:
    """Human label rows of each image's latest review (rows without review_id follow the image)."""
    out: dict[str, list[HumanLabelRow]] = defaultdict(list)
    for h in human_labels:
        rev = latest.get(h["image_id"])
        if rev is not None and (h.get("review_id") is None or h["review_id"] == rev.get("review_id")):
            out[h["image_id"]].append(h)
    return out


def _image_errors(autos: list[PredictionRow | LabelRow], humans: list[HumanLabelRow], move_iou: float) -> list[str]:
    """Why an audited image is in error (empty list when its auto labels were kept as they were)."""
    errors: list[str] = []
    by_pid = {a.get("prediction_id"): a for a in autos if a.get("prediction_id") is not None}
    seen: set[str] = set()
    unlinked: list[HumanLabelRow] = []
    for h in humans:
        pid = h.get("source_prediction_id")
        action = h.get("action")
        if action == "added":
            errors.append(f"added {h.get('category')}")
            continue
        if pid is None or pid not in by_pid:
            if action != "deleted":  # a deletion marker without a known auto label changes nothing
                unlinked.append(h)
            continue
        seen.add(pid)
        a = by_pid[pid]
        if action == "deleted":
            errors.append(f"deleted {a['category']} {pid}")
        elif h.get("category") != a["category"]:
            errors.append(f"relabeled {pid} {a['category']} -> {h.get('category')}")
        elif iou(a["bbox"], h["bbox"]) < move_iou:
            errors.append(f"moved {a['category']} {pid} (IoU {iou(a['bbox'], h['bbox']):.2f})")
    rest = [a for a in autos if a.get("prediction_id") is None or a.get("prediction_id") not in seen]
    pairs = greedy_match(
        [a["bbox"] for a in rest], [h["bbox"] for h in unlinked], 0.5,
        [a["category"] for a in rest], [h["category"] for h in unlinked], same_class=True,
    ) if rest and unlinked else []
    for i, _, v in pairs:
        if v < move_iou:
            errors.append(f"moved {rest[i]['category']} (IoU {v:.2f})")
    matched_a = {i for i, _, _ in pairs}
    matched_h = {j for _, j, _ in pairs}
    errors += [f"deleted {a['category']} {a.get('prediction_id') or ''}".rstrip()
               for i, a in enumerate(rest) if i not in matched_a]
    errors += [f"added {h.get('category')}" for j, h in enumerate(unlinked) if j not in matched_h]
    return errors


def tag_errors(auto_tags: Collection[str], human_tags: Collection[str]) -> list[str]:
    """Why an audited image's image-level tags are in error (progressive labeling, ``level: tag``):
    a tag the image was auto-accepted with that its reviewer removed, or a tag the reviewer added.

    Args:
        auto_tags: tag categories of the image's auto-accepted tag pre-labels.
        human_tags: tag categories of the image's latest review (none given: the classes are absent).

    Returns:
        ``["tag removed C", ...] + ["tag added C", ...]`` in category order; empty when they agree.
    """
    a, h = set(auto_tags), set(human_tags)
    return [f"tag removed {c}" for c in sorted(a - h)] + [f"tag added {c}" for c in sorted(h - a)]


def _pct(x: float) -> str:
    return f"{x * 100:.2f}".rstrip("0").rstrip(".") + "%"


def audit(
    review_queue: Sequence[ReviewQueueRow],
    reviews: Sequence[ReviewRow],
    human_labels: Sequence[HumanLabelRow],
    auto_labels: Sequence[PredictionRow] | Sequence[LabelRow],
    move_iou: float = 0.75,
    target: float = 0.02,
    confidence: float = 0.95,
    auto_tags: Mapping[str, Collection[str]] | None = None,
    human_tags: Mapping[str, Collection[str]] | None = None,
) -> dict:
    """Audited error rate of auto-accepted labels on the QA sample, with its Wilson interval.

    Audited images: route ``qa_sample`` in ``review_queue`` and a non-cancelled review (the
    latest by ``updated_at`` when several). An image is in error when its latest review deleted
    an auto label (``deleted`` marker with its ``source_prediction_id``, or the auto label is
    missing), relabeled one (other category), moved one (IoU < ``move_iou``), or added a box.
    Human rows without a link are matched to the remaining auto labels greedily (IoU >= 0.5,
    same class): unmatched humans are additions, unmatched autos deletions.

    Image-level tags count like boxes when ``auto_tags`` is given (a project with ``level: tag``
    categories): ``auto_tags`` maps an audited image to the tag categories it was auto-accepted
    with, ``human_tags`` to those of its latest review; a tag removed or added is an error
    (:func:`tag_errors`).

    Gate: ``fail`` when the interval's lower bound exceeds ``target``, ``pass`` when its upper
    bound is below it, ``warn`` otherwise (with the audit size that would be needed).
    """
    qa_ids = sorted(i for i, r in _latest_per_route(review_queue).items() if r.get("route") == "qa_sample")
    latest = latest_reviews(reviews, qa_ids)
    audited = [i for i in qa_ids if i in latest]
    humans = _rows_of_review(human_labels, latest)
    autos: dict[str, list[PredictionRow | LabelRow]] = defaultdict(list)
    for a in auto_labels:
        autos[a["image_id"]].append(a)
    details = {}
    for image_id in audited:
        errs = _image_errors(autos.get(image_id, []), humans.get(image_id, []), move_iou)
        if auto_tags is not None:
            errs += tag_errors(auto_tags.get(image_id, ()), (human_tags or {}).get(image_id, ()))
        if errs:
            details[image_id] = errs
    n, k = len(audited), len(details)
    low, high = wilson_interval(k, n, confidence)
    p_hat = k / n if n else 0.0
    needed = sample_size_needed(p_hat, target, confidence)
    interval = f"{_pct(confidence)} interval [{low:.3f}, {high:.3f}]"
    if n == 0:
        status = "warn"
        reason = "no QA-sample image reviewed yet"
        if needed is not None:
            reason += f"; about {needed} audited images with no errors would be needed"
    elif low > target:
        status = "fail"
        reason = f"{interval} lies above the {_pct(target)} target: {k} of {n} audited images in error"
    elif high < target:
        status = "pass"
        reason = f"{interval} lies below the {_pct(target)} target: {k} of {n} audited images in error"
    else:
        status = "warn"
        reason = f"{interval} straddles the {_pct(target)} target ({k} of {n} audited images in error); "
        if needed is not None:
            rate = "no errors" if k == 0 else f"the observed {_pct(p_hat)} error rate"
            reason += f"about {needed} audited images with {rate} would be needed"
        elif p_hat >= target:
            reason += f"the observed {_pct(p_hat)} error rate is not below the target, so more audits cannot pass"
        else:
            reason += "more than 100000 audited images would be needed"
    return {"n_audited": n, "n_errors": k, "error_rate": (k / n) if n else None, "ci_low": low, "ci_high": high,
            "target": target, "confidence": confidence, "status": status, "reason": reason,
            "sample_size_needed": needed, "images_in_error": sorted(details), "errors": details}


def model_of_prediction(p: Mapping[str, Any]) -> str | None:
    """The model that made an auto label: ``model_id`` (PREDICTIONS / LABELS rows) or
    ``model_version`` (EXPORTED_PREDICTIONS rows), None when neither is set."""
    m = p.get("model_id") or p.get("model_version")
    return None if m is None else str(m)


def audits_by_model(
    review_queue: Sequence[ReviewQueueRow], reviews: Sequence[ReviewRow], human_labels: Sequence[HumanLabelRow],
    auto_labels: Sequence[Mapping[str, Any]], default_model: str | None, move_iou: float = 0.75,
    target: float = 0.02, confidence: float = 0.95, auto_tags: Mapping[str, Collection[str]] | None = None,
    human_tags: Mapping[str, Collection[str]] | None = None,
) -> dict[str, dict]:
    """:func:`audit` per model: each QA-sample image is audited against the auto labels it was
    routed with (``auto_labels`` rows carry ``model_id`` or ``model_version``), so a new model does
    not turn past audits into errors. An image whose auto labels name no model (or that has none)
    counts for ``default_model``. Returns ``{model_id: audit dict}`` for every model with a
    QA-sample image."""
    model_of: dict[str, str] = {}
    for a in auto_labels:
        m = model_of_prediction(a)
        if m is not None:
            model_of.setdefault(a["image_id"], m)
    qa_rows = [r for r in review_queue if r.get("route") == "qa_sample"]
    groups: dict[str, set[str]] = defaultdict(set)
    for r in qa_rows:
        groups[model_of.get(r["image_id"]) or str(default_model)].add(r["image_id"])
    out = {}
    for model, ids in sorted(groups.items()):
        out[model] = audit([r for r in review_queue if r["image_id"] in ids], reviews, human_labels,
                           cast(list[PredictionRow], [a for a in auto_labels if a["image_id"] in ids
                                                      and model_of_prediction(a) in (model, None)]),
                           move_iou=move_iou, target=target, confidence=confidence, auto_tags=auto_tags,
                           human_tags=human_tags)
    return out


def schema_check(labels: Sequence[LabelRow], images: dict[str, tuple[int, int]], categories: Sequence[str]) -> dict:
    """Every label: known image, known category, box inside its ``(width, height)`` image with
    positive area (:func:`labelloop.geometry.boxes.box_problem`). The first 50 problems are listed."""
    known = set(categories)
    problems: list[dict] = []
    bad_images, n_invalid = set(), 0
    for lab in labels:
        found = []
        iid = lab.get("image_id")
        size = images.get(iid) if iid is not None else None
        if size is None:
            found.append(f"unknown image_id {lab.get('image_id')!r}")
        if lab.get("category") not in known:
            found.append(f"unknown category {lab.get('category')!r}")
        if size is not None:
            why = box_problem(lab.get("bbox"), int(size[0]), int(size[1]))
            if why:
                found.append(why)
        if found:
            n_invalid += 1
            bad_images.add(lab.get("image_id"))
            if len(problems) < MAX_PROBLEMS:
                problems.append({"label_id": lab.get("label_id"), "image_id": lab.get("image_id"),
                                 "problem": "; ".join(found)})
    return {"status": "fail" if n_invalid else "pass", "n_labels": len(labels), "n_invalid": n_invalid,
            "problems": problems, "images": sorted(str(i) for i in bad_images)}


def route_counts(review_queue: Iterable[ReviewQueueRow]) -> dict[str, int]:
    """Images per route (the newest queue row per image); the three routes always present."""
    c = Counter(r.get("route") for r in _latest_per_route(review_queue).values())
    out = {r: c.pop(r, 0) for r in ROUTES}
    out.update({str(k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))})
    return out


def class_counts(labels: Iterable[LabelRow]) -> dict[str, dict]:
    """Labels per category: ``{cat: {"total": n, "by_origin": {origin: n}, "by_route": {route: n}}}``."""
    out: dict[str, dict] = {}
    for lab in labels:
        d = out.setdefault(lab["category"], {"total": 0, "by_origin": Counter(), "by_route": Counter()})
        d["total"] += 1
        d["by_origin"][str(lab.get("origin"))] += 1
        d["by_route"][str(lab.get("route"))] += 1
    return {c: {"total": d["total"], "by_origin": dict(sorted(d["by_origin"].items())),
                "by_route": dict(sorted(d["by_route"].items()))} for c, d in sorted(out.items())}


def json_safe(x):
    """JSON-ready copy: floats rounded to 6 decimals, NaN/inf -> None, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if hasattr(x, "item"):  # numpy scalar
        x = x.item()
    if isinstance(x, float):
        return round(x, 6) if math.isfinite(x) else None
    return x


def build_qa_report(
    *, labels: Sequence[LabelRow], labels_sha256: str, policy_id: str | None, review_queue: Sequence[ReviewQueueRow],
    reviews: Sequence[ReviewRow], human_labels: Sequence[HumanLabelRow], predictions: Sequence[PredictionRow],
    images: dict[str, tuple[int, int]], categories: Sequence[str],
    auto_labels: Sequence[PredictionRow] | Sequence[LabelRow] | None = None,
    resolved_images: Sequence[ResolvedImageRow] | None = None, move_iou: float = 0.75, target: float = 0.02,
    confidence: float = 0.95, iou_thresholds: Sequence[float] = (0.5, 0.75), model_id: str | None = None,
    reviewer_gold: tuple[int, int] | None = None, auto_tags: Mapping[str, Collection[str]] | None = None,
    human_tags: Mapping[str, Collection[str]] | None = None,
) -> dict:
    """Assemble the JSON-serializable QA report (floats rounded to 6 decimals, no NaN).

    Args:
        labels: LABELS rows (the label set being released); schema-checked and counted.
        labels_sha256: hash of the labels table, copied into the report.
        policy_id: routing policy id (``ProjectConfig.policy_id()``).
        review_queue, reviews, human_labels: REVIEW_QUEUE, REVIEWS, HUMAN_LABELS rows.
        predictions: PREDICTIONS rows shown to reviewers (pass only the kept ones, score >= low);
            those of reviewed images are compared with the human labels of the latest review.
        images: ``image_id -> (width, height)``; categories: the ontology's names.
        auto_labels: auto-accepted predictions of QA-sample images (image_id, category, bbox,
            prediction_id). Default: ``labels`` rows with action ``auto_accepted``.
        resolved_images: RESOLVED_IMAGES rows for the count (default: images with a label).
            Rows carry ``model_id`` / ``model_version``: each audited image is compared with the
            predictions it was routed with (:func:`audits_by_model`).
        move_iou, target, confidence: QA settings (``ProjectConfig.qa``).
        model_id: the current pre-labeler's model_id (audits of images whose auto labels name none).
        reviewer_gold: ``(k_R, n_R)`` reviewer-vs-gold image-level errors
            (:func:`labelloop.qa.release_error.reviewer_gold_errors`); None: not measured.
        auto_tags, human_tags: ``image_id -> tag categories`` auto-accepted / of the latest review,
            for a project with ``level: tag`` categories: tags count in the audit (:func:`audit`).

    Gates: ``schema_valid`` and ``release_error_rate`` (:mod:`labelloop.qa.release_error`); the
    pre-labeler's audited error rate is reported (``audit``, ``audit_by_model``) and blocks nothing.
    """
    latest = latest_reviews(reviews)
    reviewed = set(latest)
    humans = _rows_of_review(human_labels, latest)
    truths = [h for rows in humans.values() for h in rows if h.get("action") != "deleted"]
    preds = [p for p in predictions if p["image_id"] in reviewed]
    if auto_labels is None:
        auto_labels = [lab for lab in labels if lab.get("action") == "auto_accepted"]
    aud = audit(review_queue, reviews, human_labels, auto_labels, move_iou=move_iou, target=target,
                confidence=confidence, auto_tags=auto_tags, human_tags=human_tags)
    by_model = audits_by_model(review_queue, reviews, human_labels, auto_labels, model_id, move_iou=move_iou,
                               target=target, confidence=confidence, auto_tags=auto_tags, human_tags=human_tags)
    schema = schema_check(labels, images, categories)
    if resolved_images is None:
        auto_ids = {lab["image_id"] for lab in labels if lab.get("action") == "auto_accepted"}
        resolved_images = [{"image_id": i, "resolution": "auto_accepted" if i in auto_ids else "reviewed",
                            "n_labels": 0, "review_id": None, "route": None} for i in {lab["image_id"] for lab in labels}]
    resolved = len({r["image_id"] for r in resolved_images})
    per_model, n_reviewed, n_images = image_models(labels, resolved_images, model_id)
    if not per_model and aud["n_audited"] == 0:
        aud["reason"] = "no auto-accepted image in this label set: nothing of the pre-labeler's is released unreviewed"
    release_error = release_error_rate(per_model, n_reviewed, n_images,
                                       {m: (a["n_errors"], a["n_audited"]) for m, a in by_model.items()},
                                       reviewer_gold, target, confidence)
    gates = [
        gate_result("schema_valid", schema["status"], schema["n_invalid"], 0,
                    f"{schema['n_invalid']} of {schema['n_labels']} labels invalid" if schema["n_invalid"]
                    else f"all {schema['n_labels']} labels valid", schema["images"]),
        release_error_gate(release_error, sorted({i for m, a in by_model.items() if m in per_model
                                                  for i in a["images_in_error"]})),
    ]
    counts = {"routes": route_counts(review_queue), "classes": class_counts(labels), "labels": len(labels),
              "images": len(images), "images_resolved": resolved, "images_reviewed": len(reviewed)}
    return json_safe({"labels_sha256": labels_sha256, "policy_id": policy_id, "counts": counts,
                   "prelabel_vs_human": detection_metrics(preds, truths, iou_thresholds), "audit": aud,
                   "audit_by_model": by_model, "release_error": release_error,
                   "schema": schema, "gates": gates})
