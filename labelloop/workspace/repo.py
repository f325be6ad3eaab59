"""Cross-batch stages: human_labels (review import) -> labels -> qa_report -> dataset_release.

Plain functions over a :class:`~labelloop.workspace.Workspace`; the Dagster assets call them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from labelloop import batch as B
from labelloop import labelstudio, tables
from labelloop.resolve import resolve_labels
from labelloop.review_import import import_review, register_import_tasks
from labelloop.review_store import ReviewStore
from labelloop.review_sources import source_for
from labelloop.schemas import EXPORTED_PREDICTIONS, LABELS, RESOLVED_IMAGES
from labelloop.images import load_rgb, sha256_file
from labelloop.workspace import Workspace, WorkspaceError


class ReleaseBlocked(RuntimeError):
    """A blocking QA gate failed, or the QA report does not describe the current labels."""


def review_store(ws: Workspace) -> ReviewStore:
    """The review store under ``tables/human_labels`` (an S3 store's commits lock a local file)."""
    if ws.store.is_remote:
        return ReviewStore(ws.table("human_labels"), lock_path=ws.state / "review_store.lock")
    return ReviewStore(ws.table("human_labels"))


def current_predictions(ws: Workspace, model_id: str) -> list[dict]:
    """Predictions of ``model_id`` across every batch."""
    return [p for b in ws.batches() for p in B.batch_predictions(ws, b, model_id)]


# ---- human_labels ---------------------------------------------------------------------------
def review_files(ws: Workspace) -> list[Path]:
    """Every ``*.json``, ``*.xml`` and ``*.zip`` under the review inbox (Label Studio, CVAT, COCO),
    sorted by path (hidden files left out)."""
    if not ws.review_inbox.is_dir():
        return []
    return sorted(p for p in ws.review_inbox.rglob("*") if p.suffix.lower() in (".json", ".xml", ".zip")
                  and p.is_file() and not any(part.startswith(".") for part in p.relative_to(ws.review_inbox).parts))


# What a hostile or malformed export can raise past the parsers' own checks; each rejects the file
# alone (with its name and the error), never the rest of the inbox. MemoryError included: a file
# that asks for more memory than there is is refused, not retried.
MALFORMED = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError, MemoryError)


def import_file(ws: Workspace, path: Path, source: str | None = None, dry_run: bool = False,
                run_id: str | None = None) -> dict:
    """Import one review file into the review store: Label Studio JSON / JSON-MIN, CVAT for images
    1.1 XML or COCO JSON (:func:`labelloop.review_files.read_review_file`, format read from the
    content; files over ``review.max_export_mb`` are refused whole).

    Idempotent by annotation identity (source, task, annotation, updated_at). A malformed file
    is reported (``error``) and leaves the store untouched; bad tasks are rejected one by one.
    ``dry_run`` computes the same summary without storing anything. The source is ``source``,
    else the one named when the file was copied in, else the format's default source
    (``label-studio/project-N``, ``cvat/task-N``, ``coco/<stem>``). ``run_id``: the Dagster run
    importing it, stored on every new REVIEWS / HUMAN_LABELS row as ``import_run_id``.
    """
    from labelloop.review_files import read_review_file

    ws_path = Path(path).resolve()
    if ws_path.is_relative_to(ws.root):
        ws_path = ws.resolve_inside(ws.relative(ws_path))
    cfg = ws.config()
    try:
        parsed = read_review_file(ws_path, max_bytes=int(cfg.review.max_export_mb * 2**20),
                                  keypoints=cfg.keypoint_schema(), inbox=ws.review_inbox)
        records = parsed["records"]
    except (labelstudio.ExportFormatError, OSError, UnicodeDecodeError) as exc:
        return {"file": str(path), "error": str(exc), "reviews": 0, "labels": 0, "rejects": 0, "skipped": 0}
    except MALFORMED as exc:  # malformed beyond the parser's checks
        return {"file": str(path), "error": f"{path}: not a usable review export ({type(exc).__name__}: {exc})",
                "reviews": 0, "labels": 0, "rejects": 0, "skipped": 0}
    store = review_store(ws)
    in_inbox = ws_path.is_relative_to(ws.review_inbox.resolve())
    src = source or (source_for(ws, ws_path) if in_inbox else None) or parsed["default_source"]
    digest = sha256_file(ws_path)
    with ws.lock():
        try:
            result = import_review(
                records, file_name=str(path), import_sha256=digest, source=src,
                images=B.all_images(ws), exported=B.all_exported(ws), known_review_keys=store.known_review_keys(),
                categories=cfg.category_names, accept_iou=cfg.qa.accept_iou, keypoint_schema=cfg.keypoint_schema(),
                import_run_id=run_id,
            )
        except MALFORMED as exc:
            return {"file": str(path), "error": f"{path}: not a usable review export ({type(exc).__name__}: {exc})",
                    "reviews": 0, "labels": 0, "rejects": 0, "skipped": 0}
        if (result["reviews"] or result["rejects"]) and not dry_run:
            # identity of what is stored: its reviews and rejects, never the file's bytes
            keys = sorted(r["review_id"] for r in result["reviews"]) + sorted(
                f"{r['item']}\x1f{r['reason']}" for r in result["rejects"]) + [src]
            store.commit_import(hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16], result)
    return {"file": str(path), "source": src, "format": parsed["format"], "reviews": len(result["reviews"]),
            "labels": len(result["human_labels"]),
            "rejects": len(result["rejects"]), "skipped": result["skipped"],
            "reject_reasons": [f"{r['item']}: {r['reason']}" for r in result["rejects"]],
            "warnings": _source_warnings(store, parsed, records, result, src) if source is None else []}


def _source_warnings(store, parsed: dict, records: list[dict], result: dict, src: str) -> list[str]:
    """A Label Studio export without a project id (JSON-MIN) whose images were reviewed under
    another Label Studio source: most likely the same project, which needs the same ``--source``
    (else its reviews count as a second source's and supersede the first's)."""
    if parsed["format"] != "label-studio" or any(r.get("project") is not None for r in records):
        return []
    mine = {r["image_id"] for r in result["reviews"]}
    others: dict[str, int] = {}
    for iid, row in store.latest_reviews().items():
        if iid in mine and row["source"] != src and row["source"].startswith(labelstudio.TOOL + "/"):
            others[row["source"]] = others.get(row["source"], 0) + 1
    return [f"{n} of its images were reviewed before under {other}; this file names no Label Studio project "
            f"(JSON-MIN), so it was imported as {src}: if it is the same project, import it again with "
            f"--source {other}" for other, n in sorted(others.items())]


def import_inbox(ws: Workspace, run_id: str | None = None) -> dict:
    """Import every file of the review inbox (``human_labels``; ``run_id``: the Dagster run doing
    it, see :func:`import_file`). Returns per-file summaries."""
    files = [import_file(ws, p, run_id=run_id) for p in review_files(ws)]
    return {"files": files, "new_reviews": sum(f["reviews"] for f in files),
            "skipped": sum(f["skipped"] for f in files), "rejects": sum(f["rejects"] for f in files),
            "errors": [f"{f['file']}: {f['error']}" for f in files if f.get("error")]}


def register_export(ws: Workspace, path: Path, source: str) -> dict:
    """Record a Label Studio *import* file sent by another process as predictions we exported,
    so reviews of those tasks link to them (``tables/review_export/registered/``)."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: cannot read a Label Studio import file: {exc}") from None
    if not isinstance(tasks, list):
        raise WorkspaceError(f"{path}: a Label Studio import file is a JSON list of tasks")
    rows, rejects = register_import_tasks(tasks, source=source, images=B.all_images(ws))
    slug = hashlib.sha256(source.encode()).hexdigest()[:12]
    tables.write_rows(rows, EXPORTED_PREDICTIONS, ws.table("review_export", "registered", f"{slug}.parquet"))
    return {"predictions": len(rows), "rejects": [f"{r['item']}: {r['reason']}" for r in rejects]}


# ---- labels ---------------------------------------------------------------------------------
def labels_dir(ws: Workspace) -> Path:
    return ws.table("labels")


def resolve(ws: Workspace, model_id: str) -> dict:
    """Resolve labels (human > auto-accepted model label) into ``tables/labels/``."""
    cfg = ws.config()
    store = review_store(ws)
    labels, resolved = resolve_labels(B.all_images(ws), B.all_queue(ws), current_predictions(ws, model_id),
                                      store.latest_reviews(), store.current_human_labels(), cfg)
    tables.write_rows(labels, LABELS, labels_dir(ws) / "labels.parquet")
    tables.write_rows(resolved, RESOLVED_IMAGES, labels_dir(ws) / "resolved_images.parquet")
    by_origin: dict[str, int] = {}
    for lab in labels:
        by_origin[lab["origin"]] = by_origin.get(lab["origin"], 0) + 1
    return {"labels": len(labels), "images_resolved": len(resolved), "by_origin": by_origin,
            "reviewed_images": sum(1 for r in resolved if r["resolution"] == "reviewed"),
            "negatives": sum(1 for r in resolved if r["n_labels"] == 0)}


def read_labels(ws: Workspace) -> tuple[list[dict], list[dict]]:
    d = labels_dir(ws)
    return tables.read_rows(d / "labels.parquet", LABELS), tables.read_rows(d / "resolved_images.parquet", RESOLVED_IMAGES)


def labels_sha256(ws: Workspace) -> str:
    """sha256 of the resolved labels (canonical JSON of both tables), the QA <-> release link."""
    labels, resolved = read_labels(ws)
    body = json.dumps([labels, resolved], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


# ---- qa_report ------------------------------------------------------------------------------
def qa_paths(ws: Workspace) -> tuple[Path, Path]:
    d = ws.table("qa")
    return d / "qa_report.json", d / "qa_report.html"


def qa(ws: Workspace, model_id: str) -> dict:
    """Measure the current labels and write qa_report.json + qa_report.html, plus one report per
    batch and the label-error suspects' review tasks (labelloop.qa_workspace)."""
    from labelloop.qa_workspace import run_qa

    labels, resolved = read_labels(ws)
    return run_qa(ws, model_id, labels, resolved, labels_sha256(ws), _example(ws, B.all_images(ws), labels))


def _example(ws: Workspace, images: list[dict], labels: list[dict]):
    """The labeled image with the most labels (ties: image_id) for the report, or None."""
    count: dict[str, int] = {}
    for lab in labels:
        count[lab["image_id"]] = count.get(lab["image_id"], 0) + 1
    if not count:
        return None
    best = min(count, key=lambda i: (-count[i], i))
    row = next(r for r in images if r["image_id"] == best and r["status"] == "ok")
    return load_rgb(ws.locate(row["uri"])), [lab for lab in labels if lab["image_id"] == best]


def read_qa(ws: Workspace) -> dict | None:
    jpath, _ = qa_paths(ws)
    return json.loads(jpath.read_text(encoding="utf-8")) if jpath.is_file() else None


def failed_gates(report: dict) -> list[dict]:
    return [g for g in report["gates"] if g["blocking"] and g["status"] == "fail"]


def release_index_path(ws: Workspace, tag: str) -> Path:
    return ws.state / "releases" / f"{tag}.json"


def write_release_index(ws: Workspace, tag: str) -> None:
    """Remember which label_ids and image_ids a release holds (read from release/labels.parquet)."""
    rows = tables.read_rows(ws.release_dir / "labels.parquet", LABELS)
    manifest = json.loads((ws.release_dir / "manifest.json").read_text(encoding="utf-8"))
    body = {"tag": tag, "label_ids": sorted(r["label_id"] for r in rows), "counts": manifest["counts"],
            "content_sha256": manifest["content_sha256"]}
    p = release_index_path(ws, tag)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")



# ---- dataset_release ------------------------------------------------------------------------
def release(ws: Workspace, push: bool = True, resplit: bool = False, run_id: str | None = None,
            settings=None) -> dict:
    """Cut a release from the current labels if QA allows it (the files, checks, commit, tag and
    push: :func:`labelloop.release_flow.cut_checked`).

    ``resplit``: assign every near-duplicate group's split anew; ``run_id``: the Dagster run,
    written in the tag; ``settings``: :class:`labelloop.remotes.RemoteSettings` to apply first.

    Returns ``{"status": "released", "tag", "git_sha", "dvc_md5", "counts", "diff", ...}`` or
    ``{"status": "unchanged", "tag": <latest>}`` when the files would equal the last release's.

    Raises:
        ReleaseBlocked: no QA report for these labels, or a blocking gate failed (message names
            the gate, its measured value and threshold).
        labelloop.release_check.ReleaseInvalid: a written file failed validation.
    """
    cfg = ws.config()
    report = read_qa(ws)
    current = labels_sha256(ws)
    if report is None or report.get("labels_sha256") != current:
        raise ReleaseBlocked("the QA report does not describe the current labels: materialize qa_report first")
    if failed_gates(report):
        raise ReleaseBlocked("; ".join(
            f"QA gate {g['name']} failed: {g['reason']} (value {g['value']}, threshold {g['threshold']}"
            + (f"; images {', '.join(str(i)[:12] for i in g['images'][:10])}" if g.get("images") else "") + ")"
            for g in failed_gates(report)))
    labels, resolved = read_labels(ws)
    if not resolved:
        raise ReleaseBlocked("nothing to release: no image is resolved yet (auto-accepted or reviewed)")
    from labelloop.release_flow import cut_checked

    out = cut_checked(ws, report, labels, resolved, push=push, resplit=resplit, run_id=run_id, settings=settings)
    if out["status"] == "released":
        from labelloop.qa_workspace import archive_release_report

        archive_release_report(ws, out["tag"])
    return out


def _current_content(ws: Workspace) -> str | None:
    p = ws.release_dir / "manifest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))["content_sha256"]
    except (OSError, ValueError, KeyError):
        return None


def _release_note(tag: str, manifest: dict, report: dict, warn: list[dict], tags: list[dict]) -> str:
    c = manifest["counts"]
    lines = [f"{tag}: {c['images']} images ({c['negatives']} negatives), {c['labels']} labels",
             "per class: " + ", ".join(f"{k} {v}" for k, v in c["per_class"].items()),
             "splits: " + ", ".join(f"{k} {v}" for k, v in c["per_split"].items()),
             f"policy: {report.get('policy_id')}; model: {report.get('model_id')}",
             "QA: " + "; ".join(f"{g['name']} {g['status']}" for g in report["gates"])]
    lines += [f"warning: {g['name']}: {g['reason']}" for g in warn]
    if tags:
        lines.append(f"previous: {tags[-1]['tag']}")
    return "\n".join(lines)
