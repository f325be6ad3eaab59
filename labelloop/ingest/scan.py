"""The ``raw_images`` stage of one batch: decode-check every file of ``inbox/<batch>/``, its
identity (sha256 image_id), size after EXIF transpose, perceptual hash, exact and near
duplicates against every other batch, rejects with their reason.

Reads the batch's files and the ingest manifest (:mod:`labelloop.ingest.files`), writes
``tables/raw_images/<batch>.parquet`` (:func:`labelloop.workspace.repo.images_path`) and returns a
summary dict for the caller's metadata. No Dagster here; the asset in ``assets/`` is a thin wrapper.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import cast

from labelloop import tables
from labelloop.images.files import INSPECT_KEYS, inspect_image, phash_file
from labelloop.images.phash import PHASH_METHOD, assign_duplicates, upgrade_hashes
from labelloop.ingest.files import list_image_files, relative_name, stored_name
from labelloop.tables.schemas import IMAGES, ImageRow
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace, read_manifest


def scan_batch(ws: Workspace, batch: str, workers: int = 1) -> dict:
    """Decode-check every file of ``inbox/<batch>/`` and write ``tables/raw_images/<batch>``.

    One row per file (IMAGES schema): status ``ok`` or ``rejected`` with a specific reason; a
    bad file never fails the batch. Exact and near duplicates are assigned against every other
    batch under the workspace lock (representatives are first-ingested, never reassigned).
    Files dropped into the inbox by hand (not in the manifest) get ingest_seq after the
    manifest's and their inbox path as origin; one whose name is not UTF-8 is rejected, its names
    stored with ``\\xNN`` escapes (:func:`labelloop.ingest.files.stored_name`). ``workers`` > 1
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
    rows: list[ImageRow] = []
    for i, (f, rel, g) in enumerate(zip(files, names, good)):
        m = manifest.get(rel, {})
        info = next(infos) if g else dict.fromkeys(INSPECT_KEYS) | {
            "status": "rejected", "exif_orientation": 1,
            "reject_reason": "unreadable: file name is not valid UTF-8; rename the file"}
        rows.append(cast(ImageRow, {  # every column: the inspected facts (INSPECT_KEYS) and the file's place
            **info, "uri": stored_name(ws.relative(f)), "batch": batch, "source_path": stored_name(rel),
            "origin_path": m.get("origin_path", stored_name(str(f))),
            "ingest_seq": m.get("ingest_seq", extra_seq + i), "duplicate_of": None, "near_duplicate_of": None}))
    with ws.lock():
        prior, rehashed = _upgrade_prior_hashes(ws, batch)
        rows = assign_duplicates(rows, prior, cfg.images.near_duplicate_distance)
        tables.write_rows(rows, IMAGES, repo.images_path(ws, batch))
    ok = [r for r in rows if r["status"] == "ok"]
    return {
        **rehashed,
        "images": len(rows), "ok": len(ok), "rejected": len(rows) - len(ok),
        "duplicates": sum(1 for r in rows if r["duplicate_of"]),
        "near_duplicates": sum(1 for r in rows if r["near_duplicate_of"]),
        "rejects": [f"{r['source_path']}: {r['reject_reason']}" for r in rows if r["status"] != "ok"],
    }


def _upgrade_prior_hashes(ws: Workspace, batch: str) -> tuple[list[ImageRow], dict]:
    """The IMAGES rows of every batch but ``batch``, after re-hashing, once, those of them
    whose phash has an older definition (:func:`labelloop.images.phash.upgrade_hashes`) and rewrite
    those batches' tables (only ``phash`` and ``phash_method`` change). A file gone or replaced
    by other bytes since (sha256 != image_id) keeps its row's hash and is listed as a problem.
    Call under the workspace lock. Returns the rows and
    ``{"rehashed_images": n, "rehash_problems": [...]}`` when anything was old (else ``{}``)."""
    prior = repo.all_images(ws, exclude_batch=batch)
    stale = sorted({r["batch"] for r in prior if r.get("status") == "ok" and r.get("phash")
                    and r.get("phash_method") != PHASH_METHOD})
    if not stale:
        return prior, {}
    problems: list[str] = []
    n, upgraded = 0, [r for r in prior if r["batch"] not in stale]
    for b in stale:
        table_rows = cast(list[ImageRow], tables.read_rows(repo.images_path(ws, b), IMAGES))
        rows, k, bad = upgrade_hashes(table_rows,  # the table's own order
                                      lambda r: phash_file(ws.locate(r["uri"]), image_id=r["image_id"]))
        if k:
            tables.write_rows(rows, IMAGES, repo.images_path(ws, b))
        n, problems, upgraded = n + k, problems + [f"{b}/{p}" for p in bad], upgraded + rows
    return sorted(upgraded, key=lambda r: r["ingest_seq"]), {"rehashed_images": n, "rehash_problems": problems}


def _inspect_all(files: list[Path], max_pixels: int, workers: int):
    """:func:`inspect_image` of each file, in order; in ``workers`` processes when > 1."""
    if workers <= 1 or len(files) < 2:
        return (inspect_image(f, max_pixels) for f in files)

    with ProcessPoolExecutor(min(workers, len(files))) as pool:
        return list(pool.map(partial(inspect_image, max_pixels=max_pixels), files, chunksize=16))


# ---- prelabels --------------------------------------------------------------------------------


# ---- review_queue -----------------------------------------------------------------------------


# ---- review_export ----------------------------------------------------------------------------


# ---- staleness ----------------------------------------------------------------------------------


