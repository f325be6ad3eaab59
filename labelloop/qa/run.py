"""The QA report of a workspace: every figure of labelloop's QA, its gates, per release and per batch.

:func:`run_qa` (the ``qa_report`` asset) reads the workspace's tables once, then builds
(:func:`build_report`):

- the base report (:func:`labelloop.qa.metrics.build_qa_report`: counts, pre-label P/R/IoU, audit of
  the QA sample, schema check);
- reviewers vs the gold set (:mod:`labelloop.qa.gold_eval`) and inter-annotator kappa
  (:mod:`labelloop.qa.agreement`), with their gates;
- the model vs human COCO AP / AP50 / AP75 for boxes and masks (:mod:`labelloop.qa.model_eval`) and a
  model-vs-human confusion matrix;
- label-error suspects (:mod:`labelloop.qa.label_errors`), label statistics and class-balance drift
  (:mod:`labelloop.qa.statistics`), cost (:mod:`labelloop.qa.cost`) and the active calibrated policy;

and writes ``tables/qa/qa_report.{json,html}`` for the whole label set (what a release would
hold) and ``tables/qa/batches/<batch>/qa_report.{json,html}`` per batch (the batch's images and
the images sent in its review export, honeypots included). A release archives the report that
allowed it in ``tables/qa/releases/<tag>/`` (:func:`labelloop.workspace.repo.archive_release_report`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

from labelloop import tables
from labelloop.images.files import load_rgb
from labelloop.qa import label_errors as LE
from labelloop.qa.agreement import agreement_units, current_annotations, kappa_gates, pairwise_agreement
from labelloop.qa.cost import estimate_cost
from labelloop.qa.gold_eval import gold_gates, reviewer_vs_gold
from labelloop.qa.levels import recommend_levels, tag_counts
from labelloop.qa.metrics import build_qa_report, json_safe, latest_reviews
from labelloop.qa.model_eval import model_vs_human
from labelloop.qa.release_error import reviewer_gold_errors
from labelloop.qa.report.html import render_html
from labelloop.qa.statistics import box_sizes, class_drift, objects_per_image
from labelloop.qa.tags import predicted_tags, tag_agreement, tag_precision_recall
from labelloop.review.store import review_store
from labelloop.routing.confidence import QA_SAMPLE, kept_predictions
from labelloop.store import write_text_atomic
from labelloop.tables.schemas import (
    EXPORTED_PREDICTIONS,
    LABEL_SUSPECTS,
    GoldLabelRow,
    HumanLabelRow,
    ImageRow,
    LabelRow,
    LabelSuspectRow,
    PredictionRow,
    ResolvedImageRow,
    ReviewRow,
)
from labelloop.workspace import repo
from labelloop.workspace.guidelines import guidelines_sha256
from labelloop.workspace.layout import Workspace

GALLERY_MAX = 6


def guidelines_summary(sha256: str | None, human_labels: Sequence[Mapping[str, Any]]) -> dict:
    """The QA report's ``guidelines``: ``{"sha256": sha256 (the current guidelines.md's, or
    "none"), "human_labels_by_version": {sha256 or "none" or "not recorded": count of current
    human labels (deletion markers left out) made under it}}``."""
    counts: dict[str, int] = defaultdict(int)
    for h in human_labels:
        if h.get("action") != "deleted":
            counts[h.get("guidelines_sha256") or "not recorded"] += 1
    return {"sha256": sha256, "human_labels_by_version": dict(sorted(counts.items()))}


def gather(ws, model_id: str, labels: list[LabelRow], resolved: list[ResolvedImageRow], labels_sha256: str) -> dict:
    """Everything the report reads, from the workspace's tables (one read per table)."""
    cfg = ws.config()
    store = review_store(ws)
    images = repo.all_images(ws)
    preds = repo.current_predictions(ws, model_id)
    kept = kept_predictions(preds, cfg)
    return {"cfg": cfg, "labels": labels, "resolved": resolved, "labels_sha256": labels_sha256, "images": images,
            "sizes": {r["image_id"]: (r["width"], r["height"]) for r in images if r["status"] == "ok"},
            "queue": repo.all_queue(ws), "reviews": store.reviews(), "human_labels": store.current_human_labels(),
            "guidelines_sha256": guidelines_sha256(ws.root, warn=False),
            "all_human_labels": store.human_labels(),
            "predictions": [p for p in preds if p["category"] not in cfg.tag_categories],  # boxes: AP, suspects
            # box metrics read the kept box predictions; the tag QA the kept image-level tag pre-labels
            "kept": [p for p in kept if p["category"] not in cfg.tag_categories],
            "kept_tags": [p for p in kept if p["category"] in cfg.tag_categories],
            "gold_labels": repo.read_gold_labels(ws), "gold_images": repo.read_gold_images(ws),
            "exported": repo.all_exported(ws), "model_id": model_id, "previous_release": repo.previous_release(ws),
            "calibration": active_calibration(ws.root, cfg),
            "human_tags": store.human_tags() if cfg.tag_categories else [],
            "current_tags": store.current_tags() if cfg.tag_categories else {}}


def active_calibration(root: Path, cfg) -> dict | None:
    rel = cfg.routing.calibrated_policy
    if not rel:
        return None
    try:
        return json.loads((Path(root) / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _subset(d: dict, ids: set[str]) -> dict:
    """The inputs restricted to images ``ids`` (a batch's scope)."""
    keep = lambda rows: [r for r in rows if r["image_id"] in ids]  # noqa: E731
    out = dict(d)
    for k in ("labels", "resolved", "queue", "reviews", "human_labels", "all_human_labels", "predictions", "kept",
              "kept_tags", "gold_labels", "gold_images"):
        out[k] = keep(d[k])
    out["sizes"] = {i: s for i, s in d["sizes"].items() if i in ids}
    return out


def build_report(d: dict, scope: str, suspects: dict | None = None) -> tuple[dict, list[dict]]:
    """The report dict and the gallery entries (without pixels) for inputs ``d`` (:func:`gather`)."""
    cfg = d["cfg"]
    q = cfg.qa
    qa_ids = {r["image_id"] for r in d["queue"] if r["route"] == QA_SAMPLE}
    annotations = current_annotations(d["reviews"], d["all_human_labels"])
    gold_ids = sorted({r["image_id"] for r in d["gold_images"]})
    rev_gold = reviewer_gold_errors(d["gold_labels"], gold_ids, annotations, q.audit_move_iou)
    autos = routed_auto_labels(d, qa_ids)
    report = build_qa_report(
        labels=d["labels"], labels_sha256=d["labels_sha256"], policy_id=cfg.policy_id(), review_queue=d["queue"],
        reviews=d["reviews"], human_labels=d["human_labels"], predictions=d["kept"], images=d["sizes"],
        categories=cfg.category_names, auto_labels=cast(list[PredictionRow], autos),
        resolved_images=d["resolved"], move_iou=q.audit_move_iou, target=q.audit_error_target,
        confidence=q.confidence, model_id=d["model_id"],
        reviewer_gold=(rev_gold["k"], rev_gold["n"]) if rev_gold["n"] else None,
        auto_tags=routed_auto_tags(d, qa_ids, autos) if cfg.tag_categories else None,
        human_tags=d.get("current_tags") or {})
    report["scope"] = scope
    report["model_id"] = d["model_id"]
    report["release_error"]["reviewer_gold_errors"] = rev_gold["errors"]
    report["guidelines"] = guidelines_summary(d.get("guidelines_sha256"), d["human_labels"])
    iou_thr = q.gold_mean_iou_strict if q.strict else q.gold_mean_iou
    gold = reviewer_vs_gold(d["gold_labels"], gold_ids, annotations, iou_thr, q.confidence, q.bootstrap_resamples)
    gold["sets"] = sorted({r["gold_set"] for r in d["gold_images"]})
    agreement = pairwise_agreement(annotations, 0.5, q.confidence, q.bootstrap_resamples)
    kgate, kflag = kappa_gates(agreement, q.kappa_min, q.kappa_guidelines, q.confidence)
    report["gates"] += gold_gates(gold, iou_thr, q.gold_class_accuracy, q.confidence, q.strict) + [kgate, kflag]
    report["gold"], report["agreement"] = gold, agreement
    latest = latest_reviews(d["reviews"])
    truths = [h for h in d["human_labels"] if h.get("action") != "deleted" and h["image_id"] in latest]
    reviewed_sizes = {i: s for i, s in d["sizes"].items() if i in latest}
    report["model_vs_human"] = model_vs_human(truths, d["predictions"], reviewed_sizes, cfg.category_names)
    report["model_confusion"], mvh_worst = _model_confusion(d["kept"], truths, latest)
    per_class: dict[str, int] = defaultdict(int)
    for lab in d["labels"]:
        per_class[lab["category"]] += 1
    prev = d.get("previous_release")
    report["label_stats"] = {"box_sizes": box_sizes(d["labels"]),
                             "objects_per_image": objects_per_image(d["labels"], [r["image_id"] for r in d["resolved"]]),
                             "drift": class_drift(dict(per_class), prev[1] if prev else None, prev[0] if prev else None)}
    report["cost"] = estimate_cost(d["labels"], d["resolved"], d["human_labels"], cfg.cost)
    report["calibration"] = d.get("calibration")
    report["levels"] = recommend_levels(cfg, d["labels"], {p["prediction_id"]: p for p in d["predictions"]},
                                        tagged_images=tag_counts(d.get("current_tags") or {}))
    if cfg.tag_categories:
        truth = {i: t for i, t in (d.get("current_tags") or {}).items() if i in d["sizes"]}
        report["tags"] = {
            "categories": cfg.tag_categories, "reviewed_images": len(truth),
            "prelabel_vs_human": tag_precision_recall(predicted_tags(d["kept_tags"], cfg.tag_categories), truth,
                                                      cfg.tag_categories, q.confidence),
            "agreement": tag_agreement(d["reviews"], [t for t in d.get("human_tags") or [] if t["image_id"] in d["sizes"]],
                                       cfg.tag_categories, q.confidence, q.bootstrap_resamples)}
    if suspects is not None:
        ids = set(d["sizes"])
        rows = [s for s in suspects.get("rows", []) if s["image_id"] in ids]
        report["label_errors"] = {k: v for k, v in suspects.items() if k != "rows"} | {
            "open": sum(1 for s in rows if s["status"] == "open"),
            "dismissed": sum(1 for s in rows if s["status"] == "dismissed"),
            "suspects": [s for s in rows if s["status"] == "open"][:50]}
    gallery = gallery_entries(gold, agreement, annotations, d["gold_labels"], mvh_worst, d["kept"], truths)
    report["gallery"] = [{k: v for k, v in g.items() if k not in ("set_a", "set_b")} for g in gallery]
    return json_safe(report), gallery


def routed_auto_tags(d: dict, qa_ids: set[str], autos: list[dict]) -> dict[str, list[str]]:
    """``image_id -> tag categories`` each QA-sample image was auto-accepted with: its kept
    image-level tag pre-labels (``kept_tags``) of the model its box labels were routed with
    (:func:`routed_auto_labels`; the current model for an image without one). Tag pre-labels are
    not in the review export's prediction table, so an image routed by an older model than the
    one whose tag pre-labels are stored gets none (its tags are not audited)."""
    model_of = {a["image_id"]: str(a.get("model_id") or a.get("model_version")) for a in autos
                if a.get("model_id") or a.get("model_version")}
    out: dict[str, set[str]] = {i: set() for i in qa_ids}
    for p in d["kept_tags"]:
        i = p["image_id"]
        if i in out and p.get("model_id") == model_of.get(i, d["model_id"]):
            out[i].add(p["category"])
    return {i: sorted(c) for i, c in sorted(out.items())}


def routed_auto_labels(d: dict, qa_ids: set[str]) -> list[dict]:
    """The auto labels each QA-sample image was routed with: the predictions its batch's review
    export sent (EXPORTED_PREDICTIONS of a ``labelloop/<batch>`` export, with ``model_version``
    the model_id), so the audit compares the review with that model's predictions and not with a
    later model's. An image exported under several models takes the model whose predictions its
    reviews link to (``source_prediction_id``), else the current model; an image never exported
    falls back on the current model's kept predictions."""
    sent: dict[str, list[dict]] = defaultdict(list)
    for e in d["exported"]:
        src = str(e.get("source") or "")
        if e["image_id"] in qa_ids and src.startswith("labelloop/") and src != "labelloop/label-suspects" \
                and e.get("model_version"):
            sent[e["image_id"]].append(dict(e, model_id=e["model_version"]))
    linked = {h.get("source_prediction_id") for h in d["all_human_labels"] if h["image_id"] in qa_ids}
    out: list[dict] = []
    for image_id in sorted(qa_ids):
        rows = sent.get(image_id)
        if not rows:
            out += [dict(p) for p in d["kept"] if p["image_id"] == image_id]
            continue
        models = sorted({r["model_id"] for r in rows})
        chosen = next((r["model_id"] for r in rows if r.get("prediction_id") in linked), None) \
            or (d["model_id"] if d["model_id"] in models else models[-1])
        seen: set = set()
        for r in rows:
            if r["model_id"] == chosen and r.get("prediction_id") not in seen:
                seen.add(r.get("prediction_id"))
                out.append(r)
    return out


def _model_confusion(kept: Sequence[PredictionRow], truths: Sequence[HumanLabelRow], latest: dict[str, ReviewRow]
                     ) -> tuple[dict, list[tuple[float, str]]]:
    preds, hums = defaultdict(list), defaultdict(list)
    for p in kept:
        if p["image_id"] in latest:
            preds[p["image_id"]].append(p)
    for h in truths:
        hums[h["image_id"]].append(h)
    conf: dict = defaultdict(lambda: defaultdict(int))
    worst = []
    for image_id in sorted(latest):
        units = agreement_units(preds.get(image_id, []), hums.get(image_id, []), 0.5)
        for a, b, _ in units:
            conf[a][b] += 1
        if units:
            bad = sum(1 for a, b, _ in units if a != b)
            if bad:
                worst.append((bad / len(units), image_id))
    return {a: dict(r) for a, r in sorted(conf.items())}, sorted(worst, key=lambda x: (-x[0], x[1]))


def _boxes(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    return [{"category": r["category"], "bbox": list(r["bbox"])} for r in rows]


def gallery_entries(gold: dict, agreement: dict, annotations: list[dict], gold_labels: Sequence[GoldLabelRow],
                    mvh_worst: list[tuple[float, str]], kept: Sequence[PredictionRow], truths: Sequence[HumanLabelRow]
                    ) -> list[dict]:
    """Up to 6 worst-agreeing images, two label sets each: reviewer vs gold (most errors first),
    reviewer A vs B (lowest agreement first), model vs human (most mismatched objects first)."""
    ann = {(a["annotator"], a["image_id"]): a for a in annotations}
    gold_by = defaultdict(list)
    for g in gold_labels:
        gold_by[g["image_id"]].append(g)
    out: list[dict] = []
    g_items = sorted(((len(e), rev, i) for rev, f in gold.get("reviewers", {}).items() for i, e in f["errors"].items()),
                     key=lambda x: (-x[0], x[1], x[2]))
    for _, rev, i in g_items[:2]:
        out.append({"image_id": i, "kind": "gold", "title": f"{rev} vs gold",
                    "set_a": {"name": rev, "boxes": _boxes(ann[(rev, i)]["labels"])},
                    "set_b": {"name": "gold", "boxes": _boxes(gold_by[i])}})
    a_items = sorted((im for im in agreement.get("images", []) if im["agreement"] is not None and im["agreement"] < 1),
                     key=lambda im: (im["agreement"], im["mean_iou"] or 0.0, im["image_id"]))
    for im in a_items[:2]:
        x, y = im["annotators"][:2]
        out.append({"image_id": im["image_id"], "kind": "agreement",
                    "title": f"{x} vs {y}: agreement {im['agreement']:.2f}",
                    "set_a": {"name": x, "boxes": _boxes(ann[(x, im['image_id'])]["labels"])},
                    "set_b": {"name": y, "boxes": _boxes(ann[(y, im['image_id'])]["labels"])}})
    for share, i in mvh_worst[: GALLERY_MAX - len(out)]:
        out.append({"image_id": i, "kind": "model_vs_human", "title": f"human vs model: {share:.0%} of objects differ",
                    "set_a": {"name": "human", "boxes": _boxes([h for h in truths if h["image_id"] == i])},
                    "set_b": {"name": "model", "boxes": _boxes([p for p in kept if p["image_id"] == i])}})
    return out[:GALLERY_MAX]


def write_report(ws, folder: Path, report: dict, gallery: list[dict], example) -> tuple[Path, Path]:
    """``qa_report.json`` + ``qa_report.html`` in ``folder`` (atomic writes)."""
    uris = {r["image_id"]: r["uri"] for r in repo.all_images(ws) if r["status"] == "ok"}
    pics = []
    for g in gallery:
        if g["image_id"] in uris:
            pics.append((load_rgb(ws.locate(uris[g["image_id"]])), g))
    folder.mkdir(parents=True, exist_ok=True)
    jpath, hpath = folder / "qa_report.json", folder / "qa_report.html"
    write_text_atomic(jpath, json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n")
    write_text_atomic(hpath, render_html(report, example, pics))
    return jpath, hpath


def write_report_if_changed(ws, folder: Path, report: dict, gallery: list[dict]) -> Path:
    """:func:`write_report` (no example image) unless ``folder`` already holds the report of this
    very ``report`` and ``gallery`` (sha256 of both in ``folder/.render-key``, written after the
    report): a batch whose labels did not change is not rendered again. Returns the HTML path."""
    key = hashlib.sha256(json.dumps([report, gallery], sort_keys=True, default=str).encode()).hexdigest()
    kpath, hpath = folder / ".render-key", folder / "qa_report.html"
    if kpath.is_file() and kpath.read_text(encoding="utf-8") == key and hpath.is_file() \
            and (folder / "qa_report.json").is_file():
        return hpath
    _, hpath = write_report(ws, folder, report, gallery, None)
    write_text_atomic(kpath, key)
    return hpath


def batch_scopes(ws, d: dict) -> dict[str, set[str]]:
    """Per batch: its images plus the images its review export sent (honeypots included)."""
    scopes: dict[str, set[str]] = defaultdict(set)
    for r in d["images"]:
        if r["status"] == "ok":
            scopes[r["batch"]].add(r["image_id"])
    for e in d["exported"]:
        src = str(e.get("source") or "")
        if src.startswith("labelloop/") and src[len("labelloop/"):] in scopes:
            scopes[src[len("labelloop/"):]].add(e["image_id"])
    return dict(scopes)


def run_label_errors(ws, d: dict) -> dict:
    """Find suspects, remember dismissals, and write the suspects' review tasks."""
    cfg = d["cfg"]
    path = repo.label_suspects_path(ws)
    previous = cast(list[LabelSuspectRow], tables.read_rows(path, LABEL_SUSPECTS))
    resolved_ids = [r["image_id"] for r in d["resolved"]]
    try:
        found = LE.find_suspects(d["labels"], d["predictions"], resolved_ids, cfg.category_names,
                                 cfg.qa.label_error_threshold)
    except (ValueError, IndexError) as exc:  # cleanlab rejects degenerate inputs: report, never crash QA
        return {"rows": [r for r in previous], "undefined": f"cleanlab could not score these labels: {exc}",
                "images_sent": 0, "tasks_file": None}
    reviewed_at = {i: r.get("updated_at") for i, r in latest_reviews(d["reviews"]).items()}
    rows = LE.merge_suspects(found, previous, reviewed_at)
    tables.write_rows(rows, LABEL_SUSPECTS, path)
    tasks, exported, sent = LE.suspect_review_tasks(rows, d["images"], d["labels"], cfg.qa.max_suspects)
    out = ws.review_out / "label-suspects"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    tables.write_rows(exported, EXPORTED_PREDICTIONS, repo.suspects_export_path(ws))
    return {"rows": rows, "images_sent": len(sent), "tasks_file": ws.relative(out / "tasks.json"), "undefined": None}


def write_reports(ws, model_id: str, labels: list[LabelRow], resolved: list[ResolvedImageRow], labels_sha256: str,
                  example=None) -> dict:
    """Build and write the release-candidate report and one report per batch; returns the former
    with ``batch_reports`` (batch -> HTML path relative to the workspace)."""
    d = gather(ws, model_id, labels, resolved, labels_sha256)
    suspects = run_label_errors(ws, d)
    report, gallery = build_report(d, "all labels (release candidate)", suspects)
    batch_paths = {}
    for batch, ids in sorted(batch_scopes(ws, d).items()):
        rep, gal = build_report(_subset(d, ids), f"batch {batch}", suspects)
        h = write_report_if_changed(ws, repo.qa_dir(ws) / "batches" / batch, rep, gal)  # unchanged batches: kept
        batch_paths[batch] = ws.relative(h)
    report["batch_reports"] = batch_paths
    write_report(ws, repo.qa_dir(ws), report, gallery, example)
    return report


def run_qa(ws: Workspace, model_id: str) -> dict:
    """The ``qa_report`` asset: measure the current labels (:func:`labelloop.workspace.repo.read_labels`)
    and write ``qa_report.json`` + ``qa_report.html``, one report per batch and the label-error
    suspects' review tasks (:func:`write_reports`). Returns the report dict."""
    labels, resolved = repo.read_labels(ws)
    return write_reports(ws, model_id, labels, resolved, repo.labels_sha256(ws),
                         _example(ws, repo.all_images(ws), labels))


def _example(ws: Workspace, images: list[ImageRow], labels: list[LabelRow]):
    """The labeled image with the most labels (ties: image_id) for the report, or None."""
    count: dict[str, int] = {}
    for lab in labels:
        count[lab["image_id"]] = count.get(lab["image_id"], 0) + 1
    if not count:
        return None
    best = min(count, key=lambda i: (-count[i], i))
    row = next(r for r in images if r["image_id"] == best and r["status"] == "ok")
    return load_rgb(ws.locate(row["uri"])), [lab for lab in labels if lab["image_id"] == best]
