"""Per-batch stages: raw_images -> prelabels -> review_queue -> review_export.

Each function takes a :class:`~labelloop.workspace.Workspace` and a batch name, reads the
upstream tables, writes its own (atomically) and returns a summary dict for the caller's
metadata. No Dagster here; the assets in ``assets/`` are thin wrappers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

from labelloop import labelstudio, tables
from labelloop.images import INSPECT_KEYS, inspect_image, phash_file
from labelloop.phash import PHASH_METHOD, assign_duplicates, upgrade_hashes
from labelloop.ingest import list_image_files, relative_name, stored_name
from labelloop.prelabel.protocol import PreLabeler, iter_predictions
from labelloop.routing import route_images
from labelloop.store import is_remote
from labelloop.schemas import EXPORTED_PREDICTIONS, IMAGES, PREDICTIONS, REVIEW_QUEUE
from labelloop.workspace import Workspace, read_manifest

CHUNK_META = b"labelloop.image_ids"


# ---- raw_images ------------------------------------------------------------------------------
def images_path(ws: Workspace, batch: str) -> Path:
    return ws.table("raw_images", f"{batch}.parquet")


def all_images(ws: Workspace, exclude_batch: str | None = None) -> list[dict]:
    """IMAGES rows of every materialized batch (optionally leaving one out)."""
    folder = ws.table("raw_images")
    rows = []
    if folder.is_dir():
        for p in sorted(folder.glob("*.parquet")):
            if p.stem != exclude_batch:
                rows.extend(tables.read_rows(p, IMAGES))
    return sorted(rows, key=lambda r: r["ingest_seq"])


def scan_batch(ws: Workspace, batch: str, workers: int = 1) -> dict:
    """Decode-check every file of ``inbox/<batch>/`` and write ``tables/raw_images/<batch>``.

    One row per file (IMAGES schema): status ``ok`` or ``rejected`` with a specific reason; a
    bad file never fails the batch. Exact and near duplicates are assigned against every other
    batch under the workspace lock (representatives are first-ingested, never reassigned).
    Files dropped into the inbox by hand (not in the manifest) get ingest_seq after the
    manifest's and their inbox path as origin; one whose name is not UTF-8 is rejected, its names
    stored with ``\\xNN`` escapes (:func:`labelloop.ingest.stored_name`). ``workers`` > 1
    inspects the files in that many processes (same rows, same order).
    """
    cfg = ws.config()
    folder = ws.batch_dir(batch)
    manifest = {r["source_path"]: r for r in read_manifest(ws, batch)}
    files = list_image_files(folder) if folder.is_dir() else []
    extra_seq = 10**12 + max((r["ingest_seq"] for r in manifest.values()), default=0)
    names = [relative_name(f, folder) for f in files]
    good = [stored_name(rel) == rel for rel in names]  # a name not UTF-8 (put there by hand) is escaped
    infos = iter(_inspect_all([f for f, g in zip(files, good) if g], cfg.images.max_pixels, workers))
    rows = []
    for i, (f, rel, g) in enumerate(zip(files, names, good)):
        m = manifest.get(rel, {})
        info = next(infos) if g else dict.fromkeys(INSPECT_KEYS) | {
            "status": "rejected", "exif_orientation": 1,
            "reject_reason": "unreadable: file name is not valid UTF-8; rename the file"}
        rows.append({**info, "uri": stored_name(ws.relative(f)), "batch": batch, "source_path": stored_name(rel),
                     "origin_path": m.get("origin_path", stored_name(str(f))),
                     "ingest_seq": m.get("ingest_seq", extra_seq + i), "duplicate_of": None, "near_duplicate_of": None})
    with ws.lock():
        prior, rehashed = _upgrade_prior_hashes(ws, batch)
        rows = assign_duplicates(rows, prior, cfg.images.near_duplicate_distance)
        tables.write_rows(rows, IMAGES, images_path(ws, batch))
    ok = [r for r in rows if r["status"] == "ok"]
    return {
        **rehashed,
        "images": len(rows), "ok": len(ok), "rejected": len(rows) - len(ok),
        "duplicates": sum(1 for r in rows if r["duplicate_of"]),
        "near_duplicates": sum(1 for r in rows if r["near_duplicate_of"]),
        "rejects": [f"{r['source_path']}: {r['reject_reason']}" for r in rows if r["status"] != "ok"],
    }


def _upgrade_prior_hashes(ws: Workspace, batch: str) -> tuple[list[dict], dict]:
    """The IMAGES rows of every batch but ``batch``, after re-hashing, once, those of them
    whose phash has an older definition (:func:`labelloop.phash.upgrade_hashes`) and rewrite
    those batches' tables (only ``phash`` and ``phash_method`` change). A file gone or replaced
    by other bytes since (sha256 != image_id) keeps its row's hash and is listed as a problem.
    Call under the workspace lock. Returns the rows and
    ``{"rehashed_images": n, "rehash_problems": [...]}`` when anything was old (else ``{}``)."""
    prior = all_images(ws, exclude_batch=batch)
    stale = sorted({r["batch"] for r in prior if r.get("status") == "ok" and r.get("phash")
                    and r.get("phash_method") != PHASH_METHOD})
    if not stale:
        return prior, {}
    n, problems, upgraded = 0, [], [r for r in prior if r["batch"] not in stale]
    for b in stale:
        rows, k, bad = upgrade_hashes(tables.read_rows(images_path(ws, b), IMAGES),  # the table's own order
                                      lambda r: phash_file(ws.locate(r["uri"]), image_id=r["image_id"]))
        if k:
            tables.write_rows(rows, IMAGES, images_path(ws, b))
        n, problems, upgraded = n + k, problems + [f"{b}/{p}" for p in bad], upgraded + rows
    return sorted(upgraded, key=lambda r: r["ingest_seq"]), {"rehashed_images": n, "rehash_problems": problems}


def _inspect_all(files: list[Path], max_pixels: int, workers: int):
    """:func:`inspect_image` of each file, in order; in ``workers`` processes when > 1."""
    if workers <= 1 or len(files) < 2:
        return (inspect_image(f, max_pixels) for f in files)
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(min(workers, len(files))) as pool:
        return list(pool.map(partial(inspect_image, max_pixels=max_pixels), files, chunksize=16))


def images_to_label(ws: Workspace, batch: str) -> list[dict]:
    """Rows of ``batch`` that get pre-labels: ok, not an exact or near duplicate."""
    rows = tables.read_rows(images_path(ws, batch), IMAGES)
    return [r for r in rows if r["status"] == "ok" and not r["duplicate_of"] and not r["near_duplicate_of"]]


# ---- prelabels --------------------------------------------------------------------------------
def prelabel_dir(ws: Workspace, batch: str, model_id: str) -> Path:
    return ws.table("prelabels", batch, model_id.replace("/", "_"))


def _done_image_ids(folder: Path) -> set[str]:
    done: set[str] = set()
    if folder.is_dir():
        for p in folder.glob("part-*.parquet"):
            meta = tables.read_schema(p).metadata or {}
            done.update(json.loads(meta.get(CHUNK_META, b"[]")))
    return done


def prediction_id(model_id: str, image_id: str, category: str, index: int) -> str:
    """``pr-`` + 16 hex of sha256(model_id, image_id, category, rank within category)."""
    return "pr-" + hashlib.sha256(f"{model_id}\0{image_id}\0{category}\0{index}".encode()).hexdigest()[:16]


def prelabel_batch(ws: Workspace, batch: str, model: PreLabeler, run_id: str, chunk_size: int = 200,
                   skip: set[str] | frozenset = frozenset()) -> dict:
    """Predict every image of ``batch`` missing from ``(image_id, model_id)`` and store it.
    Images in ``skip`` (image_ids: the reviewed images, whose human labels win) are not predicted.

    Resumable: each chunk of ``chunk_size`` images is one part file (Parquet, atomic) whose
    metadata lists the images it covers (including those with no detection), so a re-run
    after a crash keeps finished chunks and computes only what is missing. A new model_id
    writes a new folder and never touches older predictions or human labels.
    """
    folder = prelabel_dir(ws, batch, model.model_id)
    done = _done_image_ids(folder)
    todo = [r for r in images_to_label(ws, batch) if r["image_id"] not in done]
    n_skipped = sum(1 for r in todo if r["image_id"] in skip)
    todo = [r for r in todo if r["image_id"] not in skip]
    seen: set[str] = set()
    todo = [r for r in todo if not (r["image_id"] in seen or seen.add(r["image_id"]))]
    n_parts = len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0
    started, n_pred, failed = time.perf_counter(), 0, []
    rows: list[dict] = []
    covered: list[str] = []
    pending = 0  # images of todo handled since the last part file

    def flush() -> None:
        nonlocal n_parts, n_pred, rows, covered, pending
        table = tables.to_table(rows, PREDICTIONS)
        table = table.replace_schema_metadata({CHUNK_META: json.dumps(covered).encode()})
        tables.write_table(table, folder / f"part-{n_parts:05d}.parquet")
        n_parts, n_pred = n_parts + 1, n_pred + len(rows)
        rows, covered, pending = [], [], 0

    # One stream over the whole batch (the batched backend keeps its DataLoader running across
    # part files); a part file is written after every chunk_size images, in input order.
    for i, result in iter_predictions(model, [ws.locate(img["uri"]) for img in todo], [img["image_id"] for img in todo]):
        img = todo[i]
        pending += 1
        if isinstance(result, BaseException):  # undecodable file, or out of memory alone
            failed.append(f"{img['source_path']}: {result}")
        else:
            covered.append(img["image_id"])
            rank: dict[str, int] = {}
            for d in result:
                k = rank[d.category] = rank.get(d.category, -1) + 1
                rows.append({"prediction_id": prediction_id(model.model_id, img["image_id"], d.category, k),
                             "image_id": img["image_id"], "category": d.category, "bbox": list(d.bbox),
                             "score": d.score, "mask": d.mask, "model_id": model.model_id,
                             "checkpoint_sha256": model.checkpoint_sha256, "prompt": d.prompt, "run_id": run_id})
        if pending == chunk_size:
            flush()
    if pending:
        flush()
    seconds = time.perf_counter() - started
    return {"model_id": model.model_id, "device": model.device, "images_predicted": len(todo) - len(failed),
            "images_cached": len(done), "images_skipped_reviewed": n_skipped, "predictions_new": n_pred, "seconds": round(seconds, 3),
            "images_per_second": round((len(todo) - len(failed)) / seconds, 3) if seconds > 0 and todo else None,
            "failed": failed}


def batch_predictions(ws: Workspace, batch: str, model_id: str) -> list[dict]:
    return tables.read_rows(prelabel_dir(ws, batch, model_id), PREDICTIONS)


# ---- review_queue -----------------------------------------------------------------------------
def queue_path(ws: Workspace, batch: str) -> Path:
    return ws.table("review_queue", f"{batch}.parquet")


def route_batch(ws: Workspace, batch: str, model_id: str, reviewed: set[str] | frozenset = frozenset()) -> dict:
    """Route the batch's images by confidence (labelloop.routing) and write its review queue.

    Images in ``reviewed`` (image_ids) that the queue already holds keep their row (route,
    policy, QA-sample membership) as it was when they were reviewed; only the others are routed
    again, so a new policy or model re-routes unreviewed images and never touches reviewed ones.
    """
    from labelloop.active_learning import assign_reviewers, prioritize  # issue 4: priority, budget, double review

    cfg = ws.config()
    qp = queue_path(ws, batch)
    old = {q["image_id"]: q for q in tables.read_rows(qp, REVIEW_QUEUE)} if qp.is_file() and reviewed else {}
    kept = [old[i] for i in old if i in reviewed]
    frozen = {q["image_id"] for q in kept}
    images = [r for r in images_to_label(ws, batch) if r["image_id"] not in frozen]
    preds = [p for p in batch_predictions(ws, batch, model_id) if p["image_id"] not in frozen]
    rows = assign_reviewers(prioritize(route_images(images, preds, cfg), images, preds, cfg), cfg)
    wanted = {r["image_id"] for r in images_to_label(ws, batch)}
    rows = rows + [q for q in kept if q["image_id"] in wanted]  # reviewed rows last, unchanged
    tables.write_rows(rows, REVIEW_QUEUE, queue_path(ws, batch))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["route"]] = counts.get(r["route"], 0) + 1
    return {"policy_id": cfg.policy_id(), "routes": counts, "images": len(rows)}


def all_queue(ws: Workspace) -> list[dict]:
    return tables.read_rows(ws.table("review_queue"), REVIEW_QUEUE)


# ---- review_export ----------------------------------------------------------------------------
def exported_path(ws: Workspace, batch: str) -> Path:
    return ws.table("review_export", f"{batch}.parquet")


def export_batch(ws: Workspace, batch: str, model_id: str, reviewed: set[str]) -> dict:
    """Write ``review_out/<batch>/tasks.json`` (Label Studio import file with pre-annotations),
    ``label_config.xml`` and ``annotations.xml`` (the same pre-annotations as CVAT for images 1.1,
    :mod:`labelloop.cvat`) for the images routed to review that active learning selected, plus
    the QA sample (:func:`labelloop.active_learning.to_send`), leaving out images already reviewed
    (``reviewed``: image_ids) unless ``review.resend_reviewed``. Records what was sent in
    ``tables/review_export/<batch>.parquet`` and stamps ``exported_to``/``exported_at`` on the
    queue rows."""
    from labelloop.active_learning import to_send  # issue 4: only what active learning selected (+ QA sample)

    cfg = ws.config()
    queue = tables.read_rows(queue_path(ws, batch), REVIEW_QUEUE)
    send = [q for q in to_send(queue) if cfg.review.resend_reviewed or q["image_id"] not in reviewed]
    ids = {q["image_id"] for q in send}
    images = [r for r in images_to_label(ws, batch) if r["image_id"] in ids]
    low = {c.name: cfg.thresholds(c.name).low for c in cfg.categories}
    preds = [p for p in batch_predictions(ws, batch, model_id) if p["image_id"] in ids and p["score"] >= low.get(p["category"], 2)]
    mask_cats = [c.name for c in cfg.categories if c.masks]  # their masks are reviewed as brush regions
    tasks, exported = labelstudio.build_import_tasks(
        images, preds, model_version=model_id, batch=batch, keypoints=cfg.keypoint_schema(), masks=mask_cats,
        reviewers={q["image_id"]: q.get("reviewers_required") or 1 for q in send})
    order = {q["image_id"]: i for i, q in enumerate(send)}
    tasks.sort(key=lambda t: order.get(t["data"]["image_id"], 0))  # highest priority first
    from labelloop.gold import mix_honeypots  # gold images, unmarked, among the tasks (issue 5)

    tasks, exported = mix_honeypots(ws, batch, model_id, tasks, exported)
    out = ws.review_out / batch
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    _atomic_text(out / "label_config.xml",
                 labelstudio.label_config_xml(cfg.category_names, keypoints=cfg.keypoint_schema() or None,
                                              masks=mask_cats or None) + "\n")
    from labelloop.cvat import build_cvat_xml  # issue 4: the same batch for CVAT (annotations.xml)

    cvat_xml = build_cvat_xml(images, preds, cfg.category_names, task_name=f"{cfg.project}/{batch}",
                              mask_shape=cfg.review.cvat_mask_shape, keypoints=cfg.keypoint_schema())
    _atomic_text(out / "annotations.xml", cvat_xml.decode("utf-8"))
    tables.write_rows(exported, EXPORTED_PREDICTIONS, exported_path(ws, batch))
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rel = ws.relative(out / "tasks.json")
    for q in queue:
        if q["image_id"] in ids:
            q["exported_to"], q["exported_at"] = rel, now
    tables.write_rows(queue, REVIEW_QUEUE, queue_path(ws, batch))
    return {"tasks": len(tasks), "predictions_sent": len(exported), "already_reviewed": len(
        [q for q in queue if q["route"] != "auto_accept" and q["image_id"] in reviewed]), "file": rel}


def _atomic_text(path: Path, text: str) -> None:
    if is_remote(path):  # one PUT: atomic on an object store
        path.write_text(text, encoding="utf-8")
        return
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def all_exported(ws: Workspace) -> list[dict]:
    """Every prediction sent to review (our exports and registered foreign import files)."""
    return tables.read_rows(ws.table("review_export"), EXPORTED_PREDICTIONS)


# ---- staleness ----------------------------------------------------------------------------------
def stale_stage(ws: Workspace, batch: str, model_id: str,
                reviewed: set[str] | frozenset = frozenset()) -> tuple[str, str] | None:
    """``(first asset to re-run, why)`` when ``batch``'s per-batch tables are missing or stale,
    or None when they are current. The asset is ``raw_images`` (not materialized, or the inbox
    files changed), ``prelabels`` (predictions of ``model_id`` missing for an image that is not in
    ``reviewed``), ``review_queue`` (an unreviewed image routed with another routing or
    active-learning policy, or the queue is older than the predictions) or ``review_export``
    (older than the queue). Reviewed images never make a batch stale: their labels are human."""
    ip = images_path(ws, batch)
    if not ip.is_file():
        return "raw_images", "raw_images not materialized"
    folder = ws.batch_dir(batch)
    on_disk = {stored_name(relative_name(f, folder)) for f in list_image_files(folder)} if folder.is_dir() else set()
    if on_disk != {r["source_path"] for r in tables.read_rows(ip, IMAGES)}:
        return "raw_images", "inbox files changed"
    wanted = {r["image_id"] for r in images_to_label(ws, batch)}
    if wanted - set(reviewed) - _done_image_ids(prelabel_dir(ws, batch, model_id)):
        return "prelabels", f"predictions of {model_id} missing"
    qp = queue_path(ws, batch)
    if not qp.is_file():
        return "review_queue", "review_queue not materialized"
    queue = tables.read_rows(qp, REVIEW_QUEUE)
    open_rows = [q for q in queue if q["image_id"] not in reviewed]
    if {q["image_id"] for q in queue} != wanted or any(q["policy_id"] != ws.config().policy_id() for q in open_rows):
        return "review_queue", "routing policy or images changed"
    from labelloop.active_learning import al_policy_id  # issue 4

    if any(q.get("al_policy_id") != al_policy_id(ws.config()) for q in open_rows):
        return "review_queue", "active-learning or double-review settings changed"
    parts = list(prelabel_dir(ws, batch, model_id).glob("part-*.parquet"))
    if parts and max(_mtime_ns(p) for p in parts) > _mtime_ns(qp):
        return "review_queue", "predictions newer than the review queue"
    ep = exported_path(ws, batch)
    if not ep.is_file() or _mtime_ns(ep) < _mtime_ns(qp) - 10**9:
        return "review_export", "review_export older than the review queue"
    return None


def stale_reason(ws: Workspace, batch: str, model_id: str, reviewed: set[str] | frozenset = frozenset()) -> str | None:
    """Why ``batch``'s per-batch tables are missing or stale, or None (see :func:`stale_stage`)."""
    st = stale_stage(ws, batch, model_id, reviewed)
    return st[1] if st else None


def _mtime_ns(path) -> int:
    """Modification time in ns: the file's mtime, or an object's Last-Modified (1 s resolution)."""
    st = path.stat()
    ns = getattr(st, "st_mtime_ns", None)
    return int(ns) if ns is not None else int(st.st_mtime * 1e9)
