"""What an auditor asks: the state of a workspace (``status``) and the provenance of a label,
an image or a source file (``lineage``)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from labelloop import tables
from labelloop.release.cut import gather_inputs
from labelloop.release.lineage import release_lineage_rows
from labelloop.review.store import review_store
from labelloop.tables.schemas import IMAGES, ReviewQueueRow
from labelloop.workspace import repo, versioning
from labelloop.workspace.layout import Workspace
from labelloop.workspace.repo import release_index_path


def releases(ws: Workspace) -> list[dict]:
    """Release tags, oldest first, with counts where known and the one in release/ marked."""
    out = []
    current = versioning.release_out_md5(ws.root)
    for t in versioning.release_tags(ws.root):
        p = release_index_path(ws, t["tag"])
        idx = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
        out.append({"tag": t["tag"], "git_sha": t["git_sha"], "content_sha256": t["content_sha256"],
                    "counts": idx.get("counts"), "summary": t["subject"]})
    lock_md5 = {t["tag"]: _tag_md5(ws, t["tag"]) for t in out}
    for t in out:
        t["checked_out"] = bool(current) and lock_md5.get(t["tag"]) == current
    return out


def _tag_md5(ws: Workspace, tag: str) -> str | None:

    text = versioning.git(ws.root, "show", f"{tag}:dvc.lock", check=False)
    data = yaml.safe_load(text) if text else None
    for out in (data or {}).get("stages", {}).get("release", {}).get("outs", []):
        if out.get("path") == "release":
            return out.get("md5")
    return None


def status(ws: Workspace) -> dict:
    """``{"batches": [{"name", "images": [...]}], "releases": [...]}`` (docs/guides/own-images.md: ``status --json``)."""
    route = {q["image_id"]: q["route"] for q in repo.all_queue(ws)}
    latest = review_store(ws).latest_reviews()
    batches = []
    for b in ws.batches():
        rows = tables.read_rows(repo.images_path(ws, b), IMAGES)
        batches.append({"name": b, "materialized": repo.images_path(ws, b).is_file(), "images": [
            {"image_id": r["image_id"], "source_path": r["source_path"], "width": r["width"], "height": r["height"],
             "status": r["status"], "reject_reason": r["reject_reason"], "duplicate_of": r["duplicate_of"],
             "near_duplicate_of": r["near_duplicate_of"],
             "route": route.get(r["image_id"]) if r["status"] == "ok" and not r["duplicate_of"] and not r["near_duplicate_of"] else None,
             "reviewed": r["image_id"] in latest}
            for r in rows]})
    return {"workspace": str(ws.root), "batches": batches, "releases": releases(ws)}


def lineage(ws: Workspace, ident: str) -> dict:
    """Provenance of an image_id (or unique prefix), a label_id, or a source file name, for the
    current labels (a release's: :func:`labelloop.release.lineage.lineage_at_release`).

    Returns ``{"image": {...}, "labels": [...], "deleted": [...], "reviews": [...]}``; each label
    carries the RELEASE_LINEAGE fields (prompt, thresholds, review task, run id, QA sample ...)
    and ``release``: the tags holding it.

    Raises:
        KeyError: nothing matches ``ident``, or it matches several images (message lists them).
    """
    images = [r for r in repo.all_images(ws)]
    labels, _ = repo.read_labels(ws)
    store = review_store(ws)
    if ident.startswith("lb-"):
        hits = {lab["image_id"] for lab in labels if lab["label_id"] == ident}
    else:
        hits = {r["image_id"] for r in images if r["image_id"] and (r["image_id"].startswith(ident.lower()) and len(ident) >= 8)}
        hits |= {r["image_id"] for r in images if r["image_id"] and (r["source_path"] == ident or Path(r["source_path"]).name == ident)}
    if not hits:
        raise KeyError(f"no image, label or source file matches {ident!r}")
    if len(hits) > 1:
        raise KeyError(f"{ident!r} matches {len(hits)} images: {', '.join(sorted(h[:12] for h in hits))}; use an image_id")
    iid = hits.pop()
    files = [r for r in images if r["image_id"] == iid]
    first = files[0]
    queue: ReviewQueueRow | dict = {q["image_id"]: q for q in repo.all_queue(ws)}.get(iid, {})
    in_release = {}
    for t in versioning.release_tags(ws.root):
        p = release_index_path(ws, t["tag"])
        if p.is_file():
            in_release[t["tag"]] = set(json.loads(p.read_text(encoding="utf-8"))["label_ids"])

    mine = [lab for lab in labels if lab["image_id"] == iid]
    inputs = gather_inputs(ws, mine, [])
    info = {iid: {**first, "coco_image_id": None, "file_name": None, "split": None}}
    traced = {r["label_id"]: r for r in release_lineage_rows(mine, info, {}, inputs)}
    out_labels = []
    for lab in mine:
        out_labels.append({**traced[lab["label_id"]],
            "label_id": lab["label_id"], "origin": lab["origin"], "category": lab["category"], "bbox_xyxy": lab["bbox"],
            "score": lab["score"], "model_id": lab["model_id"], "checkpoint_sha256": lab["checkpoint_sha256"],
            "prediction_id": lab["prediction_id"], "annotator": lab["annotator"], "action": lab["action"],
            "review_id": lab["review_id"], "reviewed_at": lab["reviewed_at"], "route": lab["route"],
            "route_reason": lab["route_reason"], "policy_id": lab["policy_id"],
            "release": [t for t, ids in in_release.items() if lab["label_id"] in ids],
        })
    humans = [h for h in store.current_human_labels() if h["image_id"] == iid]
    return {
        "image": {"image_id": iid, "files": [{k: f[k] for k in ("source_path", "origin_path", "uri", "batch", "duplicate_of")} for f in files],
                  "width": first["width"], "height": first["height"], "format": first["format"],
                  "exif_orientation": first["exif_orientation"], "phash": first["phash"],
                  "near_duplicate_of": first["near_duplicate_of"], "status": first["status"],
                  "route": queue.get("route"), "route_reason": queue.get("reason"), "policy_id": queue.get("policy_id")},
        "labels": out_labels,
        "deleted": [{"category": h["category"], "bbox_xyxy": h["bbox"], "source_prediction_id": h["source_prediction_id"],
                     "annotator": h["annotator"], "reviewed_at": h["reviewed_at"]} for h in humans if h["action"] == "deleted"],
        "reviews": [{k: r[k] for k in ("review_id", "source", "task_id", "tool_annotation_id", "updated_at", "annotator", "was_cancelled")}
                    for r in store.reviews() if r["image_id"] == iid],
    }
