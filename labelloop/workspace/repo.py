"""Every table of a workspace: where it lives, how it is read, and the writes that are not a stage's.

One module owns the paths under ``tables/`` (local folder or S3 prefix, :mod:`labelloop.store`)
and ``.labelloop/``, so a feature that needs a table imports this module, never the stage that
writes it. The tables, in the order the assets write them (schemas in
:mod:`labelloop.tables.schemas`):

====================================  ==========================  =================================
path                                  schema                      written by
====================================  ==========================  =================================
``raw_images/<batch>.parquet``        ``IMAGES``                  :func:`labelloop.ingest.scan.scan_batch`
``prelabels/<batch>/<model>/part-*``  ``PREDICTIONS``             :func:`labelloop.prelabel.stage.prelabel_batch`
``review_queue/<batch>.parquet``      ``REVIEW_QUEUE``            :func:`labelloop.routing.queue.route_batch`
``review_export/<batch>.parquet``     ``EXPORTED_PREDICTIONS``    :func:`labelloop.review.export.export_batch`
``human_labels/``                     ``REVIEWS``, ...            :class:`labelloop.review.store.ReviewStore`
``labels/labels.parquet``             ``LABELS``                  :func:`labelloop.review.resolve.resolve_workspace`
``labels/resolved_images.parquet``    ``RESOLVED_IMAGES``         (the same)
``qa/qa_report.json``                 (JSON)                      :func:`labelloop.qa.run.run_qa`
``gold/<set>/{labels,images}``        ``GOLD_LABELS``, ...        :func:`labelloop.review.gold.register_gold`
``release/{splits,coco_ids}``         ``SPLIT_ASSIGNMENTS``, ...  :func:`labelloop.release.cut.cut_checked`
``models/models.parquet``             ``MODELS``                  :mod:`labelloop.models.registry`
====================================  ==========================  =================================

A missing table reads as no rows (:func:`labelloop.tables.parquet.read_table`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence, cast

from labelloop import tables
from labelloop.store import copy_file
from labelloop.tables.schemas import (
    EXPORTED_PREDICTIONS,
    GOLD_IMAGES,
    GOLD_LABELS,
    IMAGES,
    LABELS,
    MODELS,
    PREDICTIONS,
    RESOLVED_IMAGES,
    REVIEW_QUEUE,
    ExportedPredictionRow,
    GoldImageRow,
    GoldLabelRow,
    ImageRow,
    LabelRow,
    ModelRow,
    PredictionRow,
    ResolvedImageRow,
    ReviewQueueRow,
)
from labelloop.workspace.layout import Workspace

#: The Parquet metadata key under which a prediction part file lists the image_ids it covers
#: (images with no detection included), so a resumed run knows what is done.
CHUNK_META = b"labelloop.image_ids"


# ---- raw_images ------------------------------------------------------------------------------
def images_path(ws: Workspace, batch: str) -> Path:
    """``tables/raw_images/<batch>.parquet`` (IMAGES rows of one batch)."""
    return ws.table("raw_images", f"{batch}.parquet")


def all_images(ws: Workspace, exclude_batch: str | None = None) -> list[ImageRow]:
    """IMAGES rows of every materialized batch (optionally leaving one out), by ingest_seq."""
    folder = ws.table("raw_images")
    rows: list[ImageRow] = []
    if folder.is_dir():
        for p in sorted(folder.glob("*.parquet")):
            if p.stem != exclude_batch and not p.name.startswith(".tmp-"):  # a write in progress
                rows.extend(cast(list[ImageRow], tables.read_rows(p, IMAGES)))
    return sorted(rows, key=lambda r: r["ingest_seq"])


def images_to_label(ws: Workspace, batch: str) -> list[ImageRow]:
    """IMAGES rows of ``batch`` that get pre-labels: ok, not an exact or near duplicate."""
    rows = cast(list[ImageRow], tables.read_rows(images_path(ws, batch), IMAGES))
    return [r for r in rows if r["status"] == "ok" and not r["duplicate_of"] and not r["near_duplicate_of"]]


# ---- prelabels -------------------------------------------------------------------------------
def prelabel_dir(ws: Workspace, batch: str, model_id: str) -> Path:
    """``tables/prelabels/<batch>/<model_id>/``: the part files of one model on one batch."""
    return ws.table("prelabels", batch, model_id.replace("/", "_"))


def done_image_ids(folder: Path) -> set[str]:
    """The image_ids the part files in ``folder`` cover (their :data:`CHUNK_META`), predicted or not."""
    done: set[str] = set()
    if folder.is_dir():
        for p in folder.glob("part-*.parquet"):
            meta = tables.read_schema(p).metadata or {}
            done.update(json.loads(meta.get(CHUNK_META, b"[]")))
    return done


def batch_predictions(ws: Workspace, batch: str, model_id: str) -> list[PredictionRow]:
    """PREDICTIONS rows of ``model_id`` on ``batch``."""
    return cast(list[PredictionRow], tables.read_rows(prelabel_dir(ws, batch, model_id), PREDICTIONS))


def current_predictions(ws: Workspace, model_id: str) -> list[PredictionRow]:
    """PREDICTIONS rows of ``model_id`` across every batch."""
    return [p for b in ws.batches() for p in batch_predictions(ws, b, model_id)]


def prediction_index(ws: Workspace, wanted: set[str]) -> dict[str, dict]:
    """``prediction_id -> {"prompt", "run_id", "model_id"}`` for the ``wanted`` ids, read from
    every prediction part file (every batch, every model) without loading boxes or masks."""
    out: dict[str, dict] = {}
    folder = ws.table("prelabels")
    if not wanted or not folder.is_dir():
        return out
    for f in sorted(folder.rglob("*.parquet")):
        if f.name.startswith(".tmp-"):
            continue
        names = set(tables.read_schema(f).names)
        cols = [c for c in ("prediction_id", "prompt", "run_id", "model_id") if c in names]
        if "prediction_id" not in cols:
            continue
        for r in tables.read_parquet(f, columns=cols).to_pylist():
            if r["prediction_id"] in wanted:
                out.setdefault(r["prediction_id"], r)
    return out


# ---- review_queue / review_export -----------------------------------------------------------
def queue_path(ws: Workspace, batch: str) -> Path:
    """``tables/review_queue/<batch>.parquet`` (REVIEW_QUEUE rows of one batch)."""
    return ws.table("review_queue", f"{batch}.parquet")


def all_queue(ws: Workspace) -> list[ReviewQueueRow]:
    """REVIEW_QUEUE rows of every batch."""
    return cast(list[ReviewQueueRow], tables.read_rows(ws.table("review_queue"), REVIEW_QUEUE))


def exported_guidelines(ws: Workspace) -> dict[str, str]:
    """``image_id -> guidelines_sha256`` of each image's latest review export (REVIEW_QUEUE
    ``guidelines_sha256``: sha256 hex of guidelines.md, or ``"none"``); images never exported,
    or exported before the column existed, are absent."""
    return {q["image_id"]: g for q in all_queue(ws) if (g := q.get("guidelines_sha256"))}


def exported_path(ws: Workspace, batch: str) -> Path:
    """``tables/review_export/<batch>.parquet``: what a batch's review export sent."""
    return ws.table("review_export", f"{batch}.parquet")


def registered_export_path(ws: Workspace, source: str) -> Path:
    """``tables/review_export/registered/<sha256(source)[:12]>.parquet``: a foreign import file."""
    return ws.table("review_export", "registered", f"{hashlib.sha256(source.encode()).hexdigest()[:12]}.parquet")


def suspects_export_path(ws: Workspace) -> Path:
    """``tables/review_export/qa/label-suspects.parquet``: the label-error suspects sent to review."""
    return ws.table("review_export", "qa", "label-suspects.parquet")


def all_exported(ws: Workspace) -> list[ExportedPredictionRow]:
    """Every prediction sent to review (our exports and registered foreign import files)."""
    return cast(list[ExportedPredictionRow], tables.read_rows(ws.table("review_export"), EXPORTED_PREDICTIONS))


# ---- human_labels ----------------------------------------------------------------------------
def human_labels_dir(ws: Workspace) -> Path:
    """``tables/human_labels/``: the append-only review store (:mod:`labelloop.review.store`)."""
    return ws.table("human_labels")


def review_store_lock(ws: Workspace) -> Path | None:
    """The local lock file of an S3 store's review commits (None: the store locks its own folder)."""
    return ws.state / "review_store.lock" if ws.store.is_remote else None


def review_inbox_ledger_path(ws: Workspace) -> Path:
    """``.labelloop/review_inbox.json``: what each review-inbox file was last read as (its sha256,
    source, the settings it was read under, the outcome), so unchanged files are not parsed again
    (:func:`labelloop.review.inbox.read_ledger`, :func:`labelloop.review.importer.import_inbox`)."""
    return ws.state / "review_inbox.json"


# ---- labels ----------------------------------------------------------------------------------
def labels_dir(ws: Workspace) -> Path:
    """``tables/labels/``: ``labels.parquet`` (LABELS) and ``resolved_images.parquet``."""
    return ws.table("labels")


def write_labels(ws: Workspace, labels: Sequence[LabelRow], resolved: Sequence[ResolvedImageRow]) -> None:
    """Replace the resolved label set (each table written atomically)."""
    tables.write_rows(labels, LABELS, labels_dir(ws) / "labels.parquet")
    tables.write_rows(resolved, RESOLVED_IMAGES, labels_dir(ws) / "resolved_images.parquet")


def read_labels(ws: Workspace) -> tuple[list[LabelRow], list[ResolvedImageRow]]:
    """``(LABELS rows, RESOLVED_IMAGES rows)`` of the current resolved label set."""
    d = labels_dir(ws)
    return (cast(list[LabelRow], tables.read_rows(d / "labels.parquet", LABELS)),
            cast(list[ResolvedImageRow], tables.read_rows(d / "resolved_images.parquet", RESOLVED_IMAGES)))


def labels_sha256(ws: Workspace) -> str:
    """sha256 of the resolved labels (canonical JSON of both tables), the QA <-> release link."""
    labels, resolved = read_labels(ws)
    body = json.dumps([labels, resolved], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


# ---- qa_report -------------------------------------------------------------------------------
def qa_dir(ws: Workspace) -> Path:
    """``tables/qa/``: the QA report, per-batch reports, archived reports, label suspects."""
    return ws.table("qa")


def label_suspects_path(ws: Workspace) -> Path:
    """``tables/qa/label_suspects.parquet`` (LABEL_SUSPECTS: open and dismissed suspects)."""
    return qa_dir(ws) / "label_suspects.parquet"


def qa_paths(ws: Workspace) -> tuple[Path, Path]:
    """``(qa_report.json, qa_report.html)`` of the current labels."""
    d = qa_dir(ws)
    return d / "qa_report.json", d / "qa_report.html"


def read_qa(ws: Workspace) -> dict | None:
    """The current QA report (JSON), or None before the first qa_report."""
    jpath, _ = qa_paths(ws)
    return json.loads(jpath.read_text(encoding="utf-8")) if jpath.is_file() else None


def archive_release_report(ws: Workspace, tag: str) -> Path | None:
    """Copy the QA report that allowed release ``tag`` to ``tables/qa/releases/<tag>/``."""
    src = qa_dir(ws)
    if not (src / "qa_report.json").is_file():
        return None
    dest = src / "releases" / tag
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("qa_report.json", "qa_report.html"):
        if (src / name).is_file():
            copy_file(src / name, dest / name)
    return dest


# ---- gold sets -------------------------------------------------------------------------------
def gold_dir(root: Workspace | Path) -> Path:
    """``tables/gold`` of a :class:`~labelloop.workspace.layout.Workspace` (its store: local
    folder or S3 prefix), or under a workspace root folder."""
    tables_dir = getattr(root, "tables", None)
    return tables_dir / "gold" if tables_dir is not None else Path(cast(Path, root)) / "tables" / "gold"


def write_gold_set(root: Workspace | Path, gold_set: str, labels: Sequence[GoldLabelRow],
                   images: Sequence[GoldImageRow]) -> None:
    """Replace gold set ``gold_set``: ``gold/<set>/labels.parquet`` and ``images.parquet``."""
    folder = gold_dir(root) / gold_set
    tables.write_rows(labels, GOLD_LABELS, folder / "labels.parquet")
    tables.write_rows(images, GOLD_IMAGES, folder / "images.parquet")


def read_gold_labels(root: Workspace | Path) -> list[GoldLabelRow]:
    """GOLD_LABELS rows of every registered set."""
    return [cast(GoldLabelRow, r) for r in tables.read_rows(gold_dir(root), GOLD_LABELS) if r.get("gold_label_id")]


def read_gold_images(root: Workspace | Path) -> list[GoldImageRow]:
    """GOLD_IMAGES rows of every registered set."""
    return [cast(GoldImageRow, r) for r in tables.read_rows(gold_dir(root), GOLD_IMAGES) if r.get("image_id")]


# ---- releases --------------------------------------------------------------------------------
def registry_paths(ws: Workspace) -> tuple[Path, Path]:
    """``(splits.parquet, coco_ids.parquet)`` under ``tables/release/``: the split of every
    near-duplicate group and the COCO id of every image and object, kept across releases."""
    d = ws.table("release")
    return d / "splits.parquet", d / "coco_ids.parquet"


def release_index_path(ws: Workspace, tag: str) -> Path:
    """``.labelloop/releases/<tag>.json``: the label ids and counts of a release."""
    return ws.state / "releases" / f"{tag}.json"


def write_release_index(ws: Workspace, tag: str) -> None:
    """Remember which label_ids a release holds and its counts (read from ``release/``)."""
    rows = tables.read_rows(ws.release_dir / "labels.parquet", LABELS)
    manifest = json.loads((ws.release_dir / "manifest.json").read_text(encoding="utf-8"))
    body = {"tag": tag, "label_ids": sorted(r["label_id"] for r in rows), "counts": manifest["counts"],
            "content_sha256": manifest["content_sha256"]}
    p = release_index_path(ws, tag)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")


def read_release_index(ws: Workspace, tag: str) -> dict | None:
    """The index of release ``tag`` (``label_ids``, ``counts``, ``content_sha256``), or None."""
    p = release_index_path(ws, tag)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def previous_release(ws: Workspace) -> tuple[str, dict] | None:
    """``(tag, labels per class)`` of the latest release, from its index, or None."""
    folder = ws.state / "releases"
    best = None
    for p in folder.glob("dataset-v*.json") if folder.is_dir() else []:
        try:
            n = int(p.stem.rsplit("v", 1)[1])
        except ValueError:
            continue
        if best is None or n > best[0]:
            best = (n, p)
    if best is None:
        return None
    body = json.loads(best[1].read_text(encoding="utf-8"))
    return body["tag"], dict(body.get("counts", {}).get("per_class", {}))


# ---- models ----------------------------------------------------------------------------------
def models_path(ws: Workspace) -> Path:
    """``tables/models/models.parquet``: the models table (MODELS rows, :mod:`labelloop.models.registry`)."""
    return ws.table("models", "models.parquet")


def models_lock_path(ws: Workspace) -> Path:
    """``.labelloop/models.lock``: held while the models table is read, changed and written."""
    return ws.state / "models.lock"


def read_model_rows(ws: Workspace) -> list[ModelRow]:
    """MODELS rows of the workspace (none before the first model is pulled or trained)."""
    return cast(list[ModelRow], tables.read_rows(models_path(ws), MODELS))


def write_model_rows(ws: Workspace, rows: Sequence[ModelRow]) -> None:
    """Replace the models table (atomically)."""
    tables.write_rows(rows, MODELS, models_path(ws))
