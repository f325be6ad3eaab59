"""Human-readable summaries for the CLI (status, lineage, the demo)."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from labelloop.qa.intervals import wilson_interval
from labelloop.release.audit import lineage
from labelloop.workspace import repo
from labelloop.workspace.guidelines import short
from labelloop.workspace.layout import Workspace
from resources.prelabeler import PreLabelerResource


def format_status(s: dict) -> str:
    lines = [f"workspace {s['workspace']}"]
    for b in s["batches"]:
        imgs = b["images"]
        c = Counter(i["status"] for i in imgs)
        r = Counter(i["route"] for i in imgs if i["route"])
        lines.append(f"batch {b['name']}: {len(imgs)} files, {c.get('ok', 0)} ok, {c.get('rejected', 0)} rejected, "
                     f"{sum(1 for i in imgs if i['duplicate_of'])} duplicates, "
                     f"{sum(1 for i in imgs if i['near_duplicate_of'])} near duplicates; routes: "
                     + (", ".join(f"{k} {v}" for k, v in sorted(r.items())) or "none")
                     + f"; reviewed {sum(1 for i in imgs if i['reviewed'])}")
        for i in imgs:
            if i["status"] != "ok":
                lines.append(f"  rejected {i['source_path']}: {i['reject_reason']}")
    for t in s["releases"]:
        c = t["counts"] or {}
        lines.append(f"release {t['tag']}{' (in release/)' if t['checked_out'] else ''}: "
                     f"{c.get('images', '?')} images, {c.get('labels', '?')} labels")
    if not s["releases"]:
        lines.append("no release yet")
    return "\n".join(lines)


def _route_line(im: dict) -> str:
    """How the image was routed, or why it was not (a near duplicate, nothing routed yet)."""
    if im.get("route"):
        return f"  route {im['route']}: {im.get('route_reason') or '-'} [{im.get('policy_id') or '-'}]"
    if im.get("near_duplicate_of"):
        return (f"  not routed: a near duplicate of image {im['near_duplicate_of'][:12]} "
                f"(`labelloop lineage {im['near_duplicate_of'][:12]}`)")
    return "  not routed yet: `labelloop run` pre-labels and routes it"


def format_lineage(d: dict) -> str:
    im = d["image"]
    lines = [f"image {im['image_id']} ({im['width']}x{im['height']} {im['format']}, EXIF orientation "
             f"{im['exif_orientation']}, status {im['status']})"]
    lines += [f"  file {f['source_path']} (batch {f['batch']}, from {f['origin_path']})" for f in im["files"]]
    lines.append(_route_line(im))
    if d["labels"]:
        lines.append("  boxes: [x0, y0, x1, y1] in pixels of the EXIF-applied image (xyxy)")
    for lab in d["labels"]:
        trained = f" ({lab['trained_on']})" if lab.get("trained_on") else ""
        who = f"model {lab['model_id']} score {lab['score']:.2f}{trained}" if lab["origin"] == "model" else \
            f"reviewer {lab['annotator']} at {lab['reviewed_at']} (import run {(lab.get('import_run_id') or '-')[:8]}) " \
            f"under guidelines {short(lab.get('guidelines_sha256'))}"
        box = ", ".join(f"{v:.1f}" for v in lab["bbox_xyxy"])
        lines.append(f"  label {lab['label_id']} {lab['category']} [{box}] {lab['action']} by {who}; "
                     f"releases: {', '.join(lab['release']) or 'none'}")
    for dl in d["deleted"]:
        lines.append(f"  deleted prediction {dl['source_prediction_id']} ({dl['category']}) by {dl['annotator']}")
    return "\n".join(lines)


def demo_summary(ws: Workspace, st: dict, releases: list[dict], expected_block: str | None = None) -> str:
    """The demo's closing summary: images, predictions, routes, each release (made, unchanged or
    blocked), per QA gate of the last release and of a blocked attempt its value, 95% interval,
    threshold and verdict, the pre-labeler's precision / recall against the reviewers, the labeling
    cost with and without pre-labels (:mod:`labelloop.qa.cost`), one ``lineage`` line of a
    released label, and where the files are. ``expected_block`` (the demo's careless re-review)
    says that a blocked release is the expected outcome."""
    imgs = [i for b in st["batches"] for i in b["images"]]
    routes = Counter(i["route"] for i in imgs if i["route"])
    preds = sum(len(repo.current_predictions(ws, m)) for m in _model_ids(ws))
    jpath, hpath = repo.qa_paths(ws)
    lines = [
        "== labelloop demo summary ==",
        f"images ingested   {len(imgs)} ({sum(1 for i in imgs if i['status'] == 'ok')} ok, "
        f"{sum(1 for i in imgs if i['status'] != 'ok')} rejected, {sum(1 for i in imgs if i['duplicate_of'])} exact "
        f"duplicates, {sum(1 for i in imgs if i['near_duplicate_of'])} near duplicates)",
        f"predictions       {preds}",
        "routing           " + ", ".join(f"{k} {v}" for k, v in sorted(routes.items())),
        f"reviewed images   {sum(1 for i in imgs if i['reviewed'])}",
    ]
    released = [r["tag"] for r in releases if r["status"] == "released"]
    current = next((t["tag"] for t in st["releases"] if t["checked_out"]), None)
    blocked = False
    for r in releases:
        if r["status"] == "released":
            lines.append(f"release           {r['tag']} ({r['metadata'].get('images')} images, "
                         f"{r['metadata'].get('labels')} labels)")
        elif r["status"] == "unchanged":
            lines.append(f"release           unchanged since {r['tag']}")
        else:
            blocked = True
            lines.append(f"release           BLOCKED: {r['reason']}")
            if expected_block:
                names = [c["name"] for c in r.get("checks", [])]
                gold = [n for n in names if n.startswith("gold_")]
                others = [n for n in names if n not in gold]
                what = (f"is caught by the reviewer-vs-gold gate ({', '.join(gold)})" if gold
                        else f"fails {', '.join(names) or 'a blocking gate'}")
                if gold and others:
                    what += f"; also failed: {', '.join(others)}"
                lines.append(f"                  the expected outcome: {expected_block} {what}; "
                             f"{current or 'the last release'} stays the current release, nothing of it changed")
    last = released[-1] if released else None
    if last:
        lines += _gate_table(f"QA gates of {last}", _archived_report(ws, last))
    if blocked:
        lines += _gate_table("QA gates of the blocked labels", repo.read_qa(ws))
    rep = _archived_report(ws, last) if last else repo.read_qa(ws)
    if rep:
        lines += _model_and_cost_lines(rep)
    if last:
        lines += _lineage_line(ws, last)
    lines += [
        f"COCO / YOLO       {ws.release_dir / 'annotations'}  {ws.release_dir / 'data.yaml'}",
        f"QA report         {hpath}  ({jpath.name})",
        f"Dagster UI        {_labelloop_exe()} --workspace {ws.root} ui",
    ]
    return "\n".join(lines)


def _archived_report(ws: Workspace, tag: str) -> dict | None:
    path = repo.qa_dir(ws) / "releases" / tag / "qa_report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def gate_interval(report: dict, gate: dict) -> tuple[float, float] | None:
    """The 95% interval behind a gate's value in a QA report: the gate's own ``interval``
    (``release_error_rate``), the deciding reviewer's mean-IoU bootstrap interval or class-accuracy
    Wilson interval (gold gates), the deciding pair's kappa interval; None when there is none."""
    if gate.get("interval"):
        return tuple(gate["interval"])  # type: ignore[return-value]
    value = gate.get("value")
    if value is None:
        return None
    if gate["name"] in ("gold_mean_iou", "gold_class_accuracy"):
        who = next((r for r, v in (gate.get("reviewers") or {}).items() if v.get("value") == value), None)
        f = (report.get("gold") or {}).get("reviewers", {}).get(who) if who else None
        if not f:
            return None
        if gate["name"] == "gold_mean_iou":
            return tuple(f["mean_iou_ci"]) if f.get("mean_iou_ci") else None  # type: ignore[return-value]
        return wilson_interval(f["class_correct"], f["class_pairs"]) if f.get("class_pairs") else None
    if gate["name"] in ("inter_annotator_kappa", "guidelines_agreement"):
        agr = report.get("agreement") or {}
        for pair in list(agr.get("pairs") or []) + [agr.get("pooled") or {}]:
            if pair.get("kappa") == value and pair.get("ci_low") is not None:
                return (pair["ci_low"], pair["ci_high"])
    return None


def _gate_table(title: str, report: dict | None) -> list[str]:
    if not report:
        return []
    out = [f"{title} (value, 95% interval, threshold, verdict):"]
    for g in report["gates"]:
        iv = gate_interval(report, g)
        value = "-" if g["value"] is None else f"{g['value']:.3f}" if isinstance(g["value"], float) else str(g["value"])
        interval = f"[{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "-"
        op = "<" if g["name"] == "release_error_rate" else "=" if g["name"] == "schema_valid" else ">="
        verdict = {"fail": "FAIL", "not_measured": "not measured"}.get(g["status"], g["status"])
        out.append(f"  {g['name']:<22} {value:>7} {interval:<16} {op:>2} {g['threshold']:<5g} "
                   f"{verdict}{'' if g['blocking'] else ' (not blocking)'}")
    return out


def _model_and_cost_lines(rep: dict) -> list[str]:
    o = rep["prelabel_vs_human"]["overall"]["iou@0.5"]
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    a = rep["audit"]
    c = rep["cost"]
    cur = c["currency"]
    pr = (f"pre-labeler       precision {fmt(o['precision'])}, recall {fmt(o['recall'])} against the reviewers "
          f"(IoU >= 0.5: {o['tp']} matched, {o['fp']} false, {o['fn']} missed)")
    audit = (f"pre-label audit   {a['n_errors']} of {a['n_audited']} audited auto-accepted images in error "
             "(measures the model, drives calibration; not a gate)")
    cost = (f"labeling cost     without pre-labels {cur} {c['by_hand']['total']:.2f} "
            f"({c['by_hand']['images']} images, {c['by_hand']['boxes']} boxes by hand); with pre-labels "
            f"{cur} {c['review_done']['total']:.2f} (the review done); "
            + (f"saving {cur} {c['saving']:.2f}" if c["saving"] >= 0 else
               f"the pre-labels cost {cur} {-c['saving']:.2f} more than they saved (corrections of wrong pre-labels)"))
    return [pr, audit, cost]


def _lineage_line(ws: Workspace, tag: str) -> list[str]:
    """One ``labelloop lineage`` line of a label that ``tag`` holds (the first by label_id)."""
    labels, _ = repo.read_labels(ws)
    for lab in sorted(labels, key=lambda r: r["label_id"]):
        try:
            d = lineage(ws, lab["label_id"])
        except KeyError:
            continue
        hit = [x for x in d["labels"] if x["label_id"] == lab["label_id"] and tag in x["release"]]
        if hit:
            text = [ln for ln in format_lineage(d).splitlines() if ln.startswith(f"  label {lab['label_id']} ")]
            return [f"lineage           {text[0].strip()}"] if text else []
    return []


def _labelloop_exe() -> str:
    """The labelloop command as the user can type it (the venv's script when not on PATH)."""

    beside = Path(sys.executable).with_name("labelloop")
    if shutil.which("labelloop") == str(beside) or not beside.exists():
        return "labelloop"
    return str(beside)


def _model_ids(ws: Workspace) -> list[str]:

    return [PreLabelerResource().get(ws.config()).model_id]
