"""Calibrated routing: per-class high thresholds fitted on reviewed outcomes, stored as policies.

Outcomes (:func:`prediction_outcomes`): on each reviewed image (its latest review), every
prediction kept by routing (score >= its class's ``low``) is *correct* when the reviewer kept
it: a human label of the same class at IoU >= ``qa.audit_move_iou`` (0.75), matched one to one,
predictions by descending score (COCO order). Anything else (deleted, relabeled, moved) is an
error, which is exactly what the audit counts against an auto-accepted label.

Fit (:func:`fit_thresholds`), per class: among the class's reviewed predictions with score >= t,
the precision's 95% Wilson lower bound must reach ``calibration.precision_target`` (0.98); the
chosen ``high`` is the lowest such t over at least ``calibration.min_predictions`` predictions.
A class with too few reviewed predictions keeps its threshold; a class whose precision never
reaches the target gets ``high = 1.0`` (everything of that class goes to review). ``low`` is
kept, and ``high`` never drops below it.

Caveat (selection): high-scoring predictions are reviewed mostly through the QA sample, so the
fit improves as audits accumulate; the audit keeps measuring the auto-accepted labels under the
new policy, and its gate blocks a release if the error rate rises above the target.

A policy is a JSON file ``calibration/<policy_id>.json`` in the workspace (committed to its git
repository) with the thresholds, the per-class fit, the estimate of the review it saves, and
the outcomes it used (``calibration/<policy_id>.outcomes.parquet`` plus their sha256).
``routing.calibrated_policy`` in labelloop.yaml makes the next routing use it
(:func:`labelloop.workspace.config.load_config`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence, cast

import yaml

from labelloop import tables
from labelloop.geometry.boxes import greedy_match
from labelloop.qa.intervals import wilson_interval
from labelloop.review.store import review_store
from labelloop.routing.confidence import kept_predictions
from labelloop.tables.schemas import (
    CALIBRATION_OUTCOMES,
    CalibrationOutcomeRow,
    HumanLabelRow,
    PredictionRow,
    ReviewRow,
)
from labelloop.workspace import repo
from labelloop.workspace import versioning as V
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.repo import current_predictions

POLICY_DIR = "calibration"


def prediction_outcomes(predictions: Sequence[PredictionRow], human_labels: Sequence[HumanLabelRow],
                        reviewed: dict[str, ReviewRow], move_iou: float = 0.75
                        ) -> tuple[list[CalibrationOutcomeRow], dict[str, int]]:
    """CALIBRATION_OUTCOMES rows of the kept predictions of reviewed images, and per image the
    number of human labels no prediction matched (objects the model missed).

    Args:
        predictions: kept predictions (image_id, prediction_id, category, bbox, score).
        human_labels: HUMAN_LABELS rows of the latest reviews (deletion markers are ignored).
        reviewed: ``image_id -> REVIEWS row`` (latest review per image).
    """
    preds: dict[str, list[PredictionRow]] = defaultdict(list)
    for p in predictions:
        if p["image_id"] in reviewed:
            preds[p["image_id"]].append(p)
    humans: dict[str, list[HumanLabelRow]] = defaultdict(list)
    for h in human_labels:
        rev = reviewed.get(h["image_id"])
        if rev is not None and h.get("action") != "deleted" and h.get("review_id") in (None, rev.get("review_id")):
            humans[h["image_id"]].append(h)
    rows: list[CalibrationOutcomeRow] = []
    missed: dict[str, int] = {}
    for image_id in sorted(reviewed):
        ps, hs = preds.get(image_id, []), humans.get(image_id, [])
        pairs = greedy_match([p["bbox"] for p in ps], [h["bbox"] for h in hs], move_iou,
                             [p["category"] for p in ps], [h["category"] for h in hs], same_class=True,
                             order_a=[float(p["score"]) for p in ps]) if ps and hs else []
        ok = {i for i, _, _ in pairs}
        missed[image_id] = len(hs) - len(pairs)
        rows += [cast(CalibrationOutcomeRow, {  # ids read with get: a row without one gives null
                  "image_id": image_id, "prediction_id": p.get("prediction_id"), "category": p["category"],
                  "score": float(p["score"]), "correct": i in ok, "review_id": reviewed[image_id].get("review_id")})
                 for i, p in enumerate(ps)]
    return rows, missed


def fit_class(scores_correct: list[tuple[float, bool]], precision_target: float, min_n: int,
              confidence: float = 0.95) -> dict:
    """Lowest threshold t whose predictions with score >= t reach ``precision_target`` (Wilson
    lower bound) over at least ``min_n`` predictions.

    Returns ``{"n", "errors", "threshold" (None when not fitted), "precision", "ci_low",
    "reason", "curve": [[t, n, precision, ci_low], ...]}`` (curve thinned to <= 50 points).
    """
    items = sorted(scores_correct, key=lambda x: -x[0])
    n_all, err_all = len(items), sum(1 for _, c in items if not c)
    out: dict[str, Any] = {"n": n_all, "errors": err_all, "threshold": None, "precision": None, "ci_low": None,
                           "curve": []}
    if n_all < min_n:
        return out | {"reason": f"only {n_all} reviewed prediction{'' if n_all == 1 else 's'} (at least {min_n} needed): threshold kept"}
    best, correct, curve = None, 0, []
    for k, (s, c) in enumerate(items, start=1):
        correct += c
        if k < len(items) and items[k][0] == s:
            continue  # a threshold admits every prediction with an equal score
        low = wilson_interval(correct, k, confidence)[0]
        curve.append([round(s, 6), k, correct / k, low])
        if k >= min_n and low >= precision_target:
            best = (s, k, correct / k, low)
    step = max(1, len(curve) // 50)
    out["curve"] = curve[::step]
    if best is None:
        return out | {"threshold": 1.0, "reason": f"no threshold reaches a {precision_target:.0%} reviewed precision "
                                                  f"(95% lower bound): every prediction of this class goes to review"}
    s, k, prec, low = best
    return out | {"threshold": s, "precision": prec, "ci_low": low,
                  "reason": f"{k} reviewed predictions score >= {s:.4f}: precision {prec:.4f}, 95% lower bound "
                            f"{low:.4f} >= {precision_target}"}


def fit_thresholds(outcomes: list[CalibrationOutcomeRow], config: ProjectConfig) -> dict:
    """Per-class thresholds ``{cat: {"low", "high"}}`` and the fit per class (:func:`fit_class`)."""
    by_cat: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for o in outcomes:
        by_cat[o["category"]].append((float(o["score"]), bool(o["correct"])))
    cal = config.calibration
    thresholds, fits = {}, {}
    for c in config.category_names:
        cur = config.thresholds(c)
        fit = fit_class(by_cat.get(c, []), cal.precision_target, cal.min_predictions, config.qa.confidence)
        high = cur.high if fit["threshold"] is None else max(cur.low, min(1.0, fit["threshold"]))
        thresholds[c] = {"low": cur.low, "high": round(high, 6)}
        fits[c] = fit | {"previous_high": cur.high, "high": thresholds[c]["high"]}
    return {"thresholds": thresholds, "per_class": fits}


def route_share(predictions: Sequence[PredictionRow], image_ids: list[str], thresholds: dict[str, dict]) -> dict:
    """Images auto-accepted vs sent to review under ``thresholds`` (the routing rule of
    :mod:`labelloop.routing.confidence`, without the QA sample): ``{"images", "auto", "review", "review_share"}``."""
    by_image: dict[str, list[PredictionRow]] = defaultdict(list)
    for p in predictions:
        t = thresholds.get(p["category"])
        if t is not None and p["score"] >= t["low"]:
            by_image[p["image_id"]].append(p)
    auto = sum(1 for i in image_ids if by_image.get(i)
               and all(p["score"] >= thresholds[p["category"]]["high"] for p in by_image[i]))
    n = len(image_ids)
    return {"images": n, "auto": auto, "review": n - auto, "review_share": (n - auto) / n if n else None}


def image_error_rate(outcomes: list[CalibrationOutcomeRow], missed: dict[str, int],
                     thresholds: dict[str, dict]) -> dict:
    """On reviewed images, the images ``thresholds`` would auto-accept, and how many of them the
    reviewer changed (a wrong kept prediction or a missed object): the audit's definition.
    Returns ``{"auto", "errors", "error_rate" (None when none), "ci_low", "ci_high"}``."""
    by_image: dict[str, list[CalibrationOutcomeRow]] = defaultdict(list)
    for o in outcomes:
        by_image[o["image_id"]].append(o)
    auto = err = 0
    for image_id, rows in by_image.items():
        kept = [o for o in rows if o["score"] >= thresholds[o["category"]]["low"]]
        if kept and all(o["score"] >= thresholds[o["category"]]["high"] for o in kept):
            auto += 1
            err += (not all(o["correct"] for o in kept)) or missed.get(image_id, 0) > 0
    lo, hi = wilson_interval(err, auto)
    return {"auto": auto, "errors": err, "error_rate": err / auto if auto else None, "ci_low": lo, "ci_high": hi}


def calibrate(config: ProjectConfig, predictions: Sequence[PredictionRow], all_image_ids: list[str],
              human_labels: Sequence[HumanLabelRow], reviewed: dict[str, ReviewRow]) -> dict:
    """Fit a policy from reviewed outcomes (not stored; see :func:`save_policy`).

    Args:
        predictions: kept predictions of the current model on every routed image.
        all_image_ids: routed images (for the share of review saved).
    Returns the policy dict: ``policy_id``, ``based_on`` (current policy id), ``thresholds``,
    ``per_class``, ``estimate`` (review share and reviewed-image error rate before / after),
    ``settings``, and ``outcomes`` (rows, not written into the JSON).
    """
    outcomes, missed = prediction_outcomes(predictions, human_labels, reviewed, config.qa.audit_move_iou)
    fit = fit_thresholds(outcomes, config)
    before = {c: config.thresholds(c).model_dump() for c in config.category_names}
    after = fit["thresholds"]
    body = json.dumps(outcomes, sort_keys=True, default=str).encode()
    data_sha = hashlib.sha256(body).hexdigest()
    pid = "cal-" + hashlib.sha256(json.dumps([after, data_sha], sort_keys=True).encode()).hexdigest()[:12]
    estimate = {"review_share_before": route_share(predictions, all_image_ids, before)["review_share"],
                "review_share_after": route_share(predictions, all_image_ids, after)["review_share"],
                "images": len(all_image_ids),
                "reviewed_error_before": image_error_rate(outcomes, missed, before),
                "reviewed_error_after": image_error_rate(outcomes, missed, after)}
    return {"policy_id": pid, "based_on": config.policy_id(), "thresholds": after, "previous_thresholds": before,
            "per_class": fit["per_class"], "estimate": estimate,
            "settings": config.calibration.model_dump() | {"move_iou": config.qa.audit_move_iou,
                                                           "confidence": config.qa.confidence},
            "data": {"predictions": len(outcomes), "images": len(reviewed), "outcomes_sha256": data_sha,
                     "review_ids_sha256": hashlib.sha256("\n".join(sorted(
                         str(r.get("review_id")) for r in reviewed.values())).encode()).hexdigest()},
            "outcomes": outcomes}


def save_policy(root: Path, policy: dict) -> Path:
    """Write ``calibration/<policy_id>.json`` and its outcomes Parquet; returns the JSON path."""
    folder = Path(root) / POLICY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{policy['policy_id']}.outcomes.parquet"
    tables.write_rows(policy["outcomes"], CALIBRATION_OUTCOMES, out)
    body = {k: v for k, v in policy.items() if k != "outcomes"}
    body["data"] = body["data"] | {"outcomes_file": out.name}
    body["created_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path = folder / f"{policy['policy_id']}.json"
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def set_policy_in_yaml(config_path: Path, rel: str | None) -> None:
    """Point ``routing.calibrated_policy`` of labelloop.yaml at ``rel`` (None: back to the yaml's
    thresholds), editing that one line so comments and layout stay. Falls back to rewriting the
    file with PyYAML when ``routing`` is not a block mapping."""

    text = config_path.read_text(encoding="utf-8")
    value = "null" if rel is None else json.dumps(rel)
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == "routing:"), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i].startswith((" ", "#"))),
                   len(lines))
        for i in range(start + 1, end):
            if lines[i].lstrip().startswith("calibrated_policy:"):
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = f"{indent}calibrated_policy: {value}\n"
                break
        else:
            lines.insert(start + 1, f"  calibrated_policy: {value}\n")
        config_path.write_text("".join(lines), encoding="utf-8")
        return
    raw = yaml.safe_load(text)
    raw.setdefault("routing", {})["calibrated_policy"] = rel
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def read_policy(root: Path, rel: str) -> dict:
    """The stored policy JSON at ``rel`` (relative to the workspace root)."""
    return json.loads((Path(root) / rel).read_text(encoding="utf-8"))


def calibrate_workspace(ws, model_id: str, apply: bool = False) -> dict:
    """Fit a policy from the workspace's reviewed outcomes, store it under ``calibration/``, and
    with ``apply`` point labelloop.yaml at it and commit both to the workspace's git repository
    (``labelloop run`` then re-routes every batch with it; reviewed images stay reviewed).
    Returns the policy dict (without outcomes) plus ``path`` and ``applied``."""

    cfg = ws.config()
    store = review_store(ws)
    queue = repo.all_queue(ws)
    # image-level tag pre-labels have no box to match with IoU: tag thresholds are not calibrated here
    preds = [p for p in kept_predictions(current_predictions(ws, model_id), cfg) if p["category"] not in cfg.tag_categories]
    routed = sorted({q["image_id"] for q in queue})
    policy = calibrate(cfg, [p for p in preds if p["image_id"] in set(routed)], routed,
                       store.current_human_labels(), store.latest_reviews())
    path = save_policy(ws.root, policy)
    rel = path.relative_to(ws.root).as_posix()
    if apply:
        with ws.lock():
            set_policy_in_yaml(ws.config_path, rel)
            ws.config()  # validates the edited file and the policy it points at
            V.git(ws.root, "add", "--", rel, f"{POLICY_DIR}/{policy['policy_id']}.outcomes.parquet", "labelloop.yaml")
            if V.git(ws.root, "status", "--porcelain", "--", rel, "labelloop.yaml"):
                V.git(ws.root, "commit", "-q", "-m", f"calibrated routing policy {policy['policy_id']}\n\n"
                      + "\n".join(f"{c}: high {f['previous_high']} -> {f['high']} ({f['reason']})"
                                  for c, f in policy["per_class"].items()))
    out = {k: v for k, v in policy.items() if k != "outcomes"}
    return out | {"path": rel, "applied": apply, "policy_id_routing": ws.config().policy_id() if apply else None}
