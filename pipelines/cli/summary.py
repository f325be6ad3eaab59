"""Human-readable summaries for the CLI (status, lineage, the demo)."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

from labelloop.workspace import repo
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
        who = f"model {lab['model_id']} score {lab['score']:.2f}" + (f" ({lab['trained_on']})" if lab.get("trained_on")
                                                                      else "") if lab["origin"] == "model" else \
            f"reviewer {lab['annotator']} at {lab['reviewed_at']} (import run {(lab.get('import_run_id') or '-')[:8]})"
        box = ", ".join(f"{v:.1f}" for v in lab["bbox_xyxy"])
        lines.append(f"  label {lab['label_id']} {lab['category']} [{box}] {lab['action']} by {who}; "
                     f"releases: {', '.join(lab['release']) or 'none'}")
    for dl in d["deleted"]:
        lines.append(f"  deleted prediction {dl['source_prediction_id']} ({dl['category']}) by {dl['annotator']}")
    return "\n".join(lines)


def demo_summary(ws: Workspace, st: dict, releases: list[dict]) -> str:
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
    for r in releases:
        if r["status"] == "released":
            lines.append(f"release           {r['tag']} ({r['metadata'].get('images')} images, "
                         f"{r['metadata'].get('labels')} labels)")
        elif r["status"] == "unchanged":
            lines.append(f"release           unchanged since {r['tag']}")
        else:
            lines.append(f"release           BLOCKED: {r['reason']}")
        lines += [f"                  warning: {w}" for w in r.get("warnings", [])]
    lines += [
        f"COCO / YOLO       {ws.release_dir / 'annotations'}  {ws.release_dir / 'data.yaml'}",
        f"QA report         {hpath}  ({jpath.name})",
        f"Dagster UI        {_labelloop_exe()} --workspace {ws.root} ui",
    ]
    return "\n".join(lines)


def _labelloop_exe() -> str:
    """The labelloop command as the user can type it (the venv's script when not on PATH)."""

    beside = Path(sys.executable).with_name("labelloop")
    if shutil.which("labelloop") == str(beside) or not beside.exists():
        return "labelloop"
    return str(beside)


def _model_ids(ws: Workspace) -> list[str]:

    return [PreLabelerResource().get(ws.config()).model_id]
